// The web UI in a real browser (headless Chromium): the home page lists what
// was pushed, repository pages show tags with kind, platforms, size and the
// pull count, search and user pages find repositories, and nothing a user
// types is ever run as markup.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { startStack, ROOT } from '../lib/stack.mjs';
import { runIn } from '../lib/clients.mjs';
import { registryToken, pushImage, pushBlob } from '../lib/registry.mjs';
import { login, putRecord } from '../lib/atproto.mjs';
import { buildIndex, OCI_MANIFEST } from '../lib/image.mjs';

const require = createRequire(path.join(ROOT, 'tools', 'package.json'));
const { chromium } = require('playwright-core');

let stack, scratch, browser, page, alice, service, image, multi;
before(async () => {
  stack = await startStack({ log: (m) => process.stderr.write(`${m}\n`) });
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'atcr-web-test-'));
  alice = stack.accounts.alice;
  service = `127.0.0.1:${stack.ports.appview}`;
  const name = `${alice.handle}/webapp`;
  const token = await registryToken(stack, `repository:${name}:pull,push`, alice);
  image = await pushImage(stack, name, 'v1', token);
  // A multi-platform index, pushed by skopeo, under another tag.
  multi = buildIndex(scratch, { tag: 'multi', label: 'web' });
  const push = await run('skopeo', ['copy', '--all', '--dest-tls-verify=false', '--dest-creds', `${alice.handle}:${alice.appPassword}`,
    `oci:${multi.layout}:multi`, `docker://${service}/${name}:multi`]);
  assert.equal(push.code, 0, push.stderr);
  // Two pulls of v1 to count.
  const pull = await registryToken(stack, `repository:${name}:pull`);
  for (let i = 0; i < 2; i++) {
    const res = await fetch(new URL(`/v2/${name}/manifests/v1`, stack.urls.appview), { headers: { authorization: `Bearer ${pull}`, accept: OCI_MANIFEST } });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
  }
  // A repository its owner describes with an io.atcr.repo.page record (Markdown)...
  const documented = `${alice.handle}/documented`;
  await pushImage(stack, documented, 'v1', await registryToken(stack, `repository:${documented}:pull,push`, alice));
  const session = await login(stack.urls.pds, alice);
  await putRecord(stack.urls.pds, session, alice.did, 'io.atcr.repo.page', 'documented', {
    repository: 'documented', description: PAGE_MARKDOWN, createdAt: new Date().toISOString(),
  });
  // ...and one whose image describes itself (org.opencontainers.image.description).
  const described = `${alice.handle}/described`;
  const describedToken = await registryToken(stack, `repository:${described}:pull,push`, alice);
  const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: await pushBlob(stack, described, config, describedToken), size: config.length },
    layers: [],
    annotations: { 'org.opencontainers.image.description': 'A tiny <b>test</b> image' },
  }));
  const put = await fetch(new URL(`/v2/${described}/manifests/v1`, stack.urls.appview), {
    method: 'PUT', headers: { authorization: `Bearer ${describedToken}`, 'content-type': OCI_MANIFEST }, body: manifest,
  });
  assert.equal(put.status, 201, await put.text());

  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  page = await browser.newPage();
}, { timeout: 900_000 });
after(async () => {
  await browser?.close();
  await stack?.stop();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

const run = (cmd, args) => runIn(scratch, cmd, args);

const url = (p) => new URL(p, stack.urls.appview).toString();

const PAGE_MARKDOWN = [
  '# Documented',
  '',
  'Serves **pages**; see [the docs](https://example.com/docs).',
  '',
  '<script>document.title="owned"</script>',
  '',
  'A [click](javascript:document.title="owned") that must not run.',
].join('\n');

test('the home page lists the pushed repository and links to its page', async () => {
  const res = await page.goto(url('/'));
  assert.equal(res.status(), 200);
  assert.match(await page.title(), /container registry on the AT Protocol/);
  assert.match(await page.textContent('main'), new RegExp(`podman push web:1.0 ${service.replace(/[.]/g, '\\.')}/`));
  const link = page.locator(`a.repo-name[href="/r/${alice.handle}/webapp"]`);
  assert.equal(await link.count(), 1);
  assert.match(await page.locator('ul.repos li', { has: link }).textContent(), /2 tags · 2 pulls/);
  await link.click();
  await page.waitForURL(url(`/r/${alice.handle}/webapp`));
});

test('a repository page shows each tag\'s kind, platforms, size and digest, the pull count and the pull command', async () => {
  const res = await page.goto(url(`/r/${alice.handle}/webapp`));
  assert.equal(res.status(), 200);
  assert.match(await page.textContent('main'), /2 pulls/);
  assert.match(await page.textContent('code.pull'), new RegExp(`^docker pull ${service.replace(/[.]/g, '\\.')}/${alice.handle}/webapp:(v1|multi)$`));
  const row = (tag) => page.locator('table.tags tbody tr', { has: page.locator('td.tag', { hasText: new RegExp(`^${tag}$`) }) });
  const cells = async (tag) => (await row(tag).locator('td').allTextContents()).map((t) => t.trim());

  const [tagV1, kindV1, , sizeV1, digestV1] = await cells('v1');
  assert.equal(tagV1, 'v1');
  assert.equal(kindV1, 'image');
  assert.equal(sizeV1, `${(image.size / 1000).toFixed(1)} kB`, 'config plus layer, from the manifest record');
  assert.ok(image.manifest.startsWith(digestV1), `${digestV1} abbreviates ${image.manifest}`);
  assert.equal(await row('v1').locator('code').getAttribute('title'), image.manifest);

  const [, kindMulti, platforms] = await cells('multi');
  assert.equal(kindMulti, 'multi-platform index');
  assert.equal(platforms, 'linux/amd64, linux/arm64');
});

test('search finds repositories by handle or name; the user page lists theirs', async () => {
  await page.goto(url('/'));
  await page.fill('input[name=q]', 'webap');
  await page.press('input[name=q]', 'Enter');
  await page.waitForURL(/\/search\?q=webap/);
  assert.equal(await page.locator(`a.repo-name[href="/r/${alice.handle}/webapp"]`).count(), 1);
  await page.goto(url('/search?q=nothing-like-this'));
  assert.match(await page.textContent('main'), /No repository matches/);

  const user = await page.goto(url(`/u/${alice.handle}`));
  assert.equal(user.status(), 200);
  assert.match(await page.textContent('h1'), new RegExp(alice.handle));
  assert.match(await page.textContent('main'), new RegExp(alice.did));
  assert.equal(await page.locator(`a.repo-name[href="/r/${alice.handle}/webapp"]`).count(), 1);
});

test('unknown repositories and users are 404 pages; what users type is shown, never run', async () => {
  const missing = await page.goto(url(`/r/${alice.handle}/nope`));
  assert.equal(missing.status(), 404);
  assert.match(await page.textContent('main'), /No repository alice\.test\/nope is known here/);
  assert.equal((await page.goto(url('/u/nobody.test'))).status(), 404);

  const hostile = '<script>document.title="owned"</script><img src=x onerror=alert(1)>';
  const searched = await page.goto(url(`/search?q=${encodeURIComponent(hostile)}`));
  assert.equal(searched.status(), 200, 'a long, odd search is just a search');
  assert.ok((await page.textContent('h1')).includes(hostile), 'the text comes back as text');
  assert.notEqual(await page.title(), 'owned');
  assert.equal(await page.locator('main script, main img').count(), 0);
  assert.equal(await page.inputValue('input[name=q]'), hostile);
});

test('a repository page shows its owner\'s Markdown description, rendered safely, else the image\'s own description', async () => {
  assert.equal((await page.goto(url(`/r/${alice.handle}/documented`))).status(), 200);
  const description = page.locator('section.description');
  assert.equal(await description.locator('h1').textContent(), 'Documented');
  assert.equal(await description.locator('strong').textContent(), 'pages');
  assert.equal(await description.locator('a', { hasText: 'the docs' }).getAttribute('href'), 'https://example.com/docs');
  assert.match(await description.textContent(), /<script>document\.title="owned"<\/script>/, 'raw HTML is shown as text');
  assert.equal(await page.locator('main script').count(), 0);
  assert.notEqual(await description.locator('a', { hasText: 'click' }).getAttribute('href'), 'javascript:document.title="owned"');
  await description.locator('a', { hasText: 'click' }).click().catch(() => {});
  assert.notEqual(await page.title(), 'owned');

  assert.equal((await page.goto(url(`/r/${alice.handle}/described`))).status(), 200);
  assert.equal((await page.locator('section.description').textContent()).trim(), 'A tiny <b>test</b> image');
  assert.equal(await page.locator('section.description b').count(), 0);
});
