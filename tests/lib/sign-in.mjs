// Signing a demo account in to the appview in a real browser (a
// Playwright page in headless Chromium) through its PDS's own OAuth pages.

/**
 * Signs `account` in from `/login` in `page`: the handle at the appview,
 * then the password and consent on the PDS's own pages (consent is asked
 * once). Resolves once the browser is back at the appview.
 */
export async function signIn(page, stack, account, { returnTo } = {}) {
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
}
