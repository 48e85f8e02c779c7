// Headless Chromium for the web e2e tests, and signing a demo account in
// through the appview's /login and its PDS's own OAuth pages.
import path from 'node:path';
import { createRequire } from 'node:module';
import { ROOT } from './stack.mjs';

const require = createRequire(path.join(ROOT, 'tools', 'package.json'));
const { chromium } = require('playwright-core');

export const launchChromium = () => chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });

/**
 * Signs `account` in from `/login` in `page`: the handle at the appview,
 * then the password and consent on the PDS's own pages (consent is asked
 * once per account). Resolves once the browser is back at the appview.
 */
export async function signInWithOAuth(page, stack, account, { returnTo } = {}) {
  const login = new URL(returnTo ? `/login?return_to=${encodeURIComponent(returnTo)}` : '/login', stack.urls.appview);
  await page.goto(login.toString());
  await page.fill('input[name=handle]', account.handle);
  await page.click('form[action="/login"] button[type=submit]');
  await page.waitForURL((u) => u.origin === new URL(stack.urls.pds).origin, { timeout: 30_000 });
  await page.locator('input[type=password]').fill(account.password);
  await page.getByRole('button', { name: /^(Sign in|Next)$/ }).click();
  const consent = page.getByRole('button', { name: /^(Authorize|Accept)$/ });
  await Promise.race([
    consent.waitFor({ timeout: 30_000 }).then(() => consent.click()),
    page.waitForURL((u) => u.origin === new URL(stack.urls.appview).origin, { timeout: 30_000 }),
  ]);
  await page.waitForURL((u) => u.origin === new URL(stack.urls.appview).origin, { timeout: 30_000 });
}
