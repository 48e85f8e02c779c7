// The web UI in a real browser (headless Chromium): the home page lists what
// was pushed, repository pages show tags with kind, platforms, size and the
// pull count, search and user pages find repositories, a signed-in user
// stars a repository (a record in their own PDS), the holds page and user
// pages show the holds users run, and nothing a user types is ever run as
// markup.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startStack, queryD1, ROOT } from '../lib/stack.mjs';
import { runIn } from '../lib/clients.mjs';
import { registryToken, pushImage, pushBlob } from '../lib/registry.mjs';
import { login, putRecord, listAllRecords, serviceToken, xrpc } from '../lib/atproto.mjs';
import { HoldClient } from '../lib/hold.mjs';
import { launchChromium, signInWithOAuth } from '../lib/browser.mjs';
import { buildIndex, OCI_MANIFEST } from '../lib/image.mjs';


let stack, scratch, browser, page, alice, service, image, multi;
before(async () => {
  // alice runs her own hold too (her profile names it), which settings can change.
  stack = await startStack({ byoHold: true, hold: { crewCacheSeconds: 1 }, log: (m) => process.stderr.write(`${m}\n`) });
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
  // Pulls are counted through a queue: the page shows them within a minute.
  const counted = Date.now() + 60_000;
  while (!/2 pulls/.test(await (await fetch(new URL(`/r/${alice.handle}/webapp`, stack.urls.appview))).text())) {
    assert.ok(Date.now() < counted, 'the repository page shows both pulls within a minute');
    await new Promise((r) => setTimeout(r, 250));
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

  browser = await launchChromium();
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
  const recent = page.locator('section', { has: page.locator('h2', { hasText: 'Recently pushed' }) });
  const link = recent.locator(`a.repo-name[href="/r/${alice.handle}/webapp"]`);
  assert.equal(await link.count(), 1);
  assert.match(await recent.locator('ul.repos li', { has: page.locator(`a.repo-name[href="/r/${alice.handle}/webapp"]`) }).textContent(), /2 tags · 2 pulls/);
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

  const [tagV1, kindV1, , sizeV1] = await cells('v1');
  assert.equal(tagV1, 'v1');
  assert.equal(kindV1, 'image');
  assert.equal(sizeV1, `${(image.size / 1000).toFixed(1)} kB`, 'config plus layer, from the manifest record');
  const digestV1 = await row('v1').locator('td.digest code').textContent();
  assert.ok(image.manifest.startsWith(digestV1), `${digestV1} abbreviates ${image.manifest}`);
  assert.equal(await row('v1').locator('code').getAttribute('title'), image.manifest);

  const [, kindMulti, platforms] = await cells('multi');
  assert.equal(kindMulti, 'multi-platform index');
  assert.equal(platforms, 'linux/amd64, linux/arm64');
});

test('a repository page pages and sorts its tags, names its hold, tells each tag\'s age and copies the pull command', async () => {
  const name = `${alice.handle}/many`;
  const token = await registryToken(stack, `repository:${name}:pull,push`, alice);
  const first = await pushImage(stack, name, 't01', token);
  const bytes = Buffer.from(await (await fetch(url(`/v2/${name}/manifests/t01`), { headers: { authorization: `Bearer ${token}`, accept: OCI_MANIFEST } })).arrayBuffer());
  for (let i = 2; i <= 30; i++) {
    const res = await fetch(url(`/v2/${name}/manifests/t${String(i).padStart(2, '0')}`), {
      method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': OCI_MANIFEST }, body: bytes,
    });
    assert.equal(res.status, 201, await res.text());
  }
  const tagsShown = () => page.locator('table.tags td.tag').allTextContents();

  await page.goto(url(`/r/${name}`));
  assert.equal((await tagsShown()).length, 25, 'a page holds 25 tags');
  assert.equal((await tagsShown())[0], 't30', 'newest push first');
  assert.match(await page.textContent('p.tag-count'), /30 tags, 1–25 shown/);
  assert.equal(await page.textContent('code.hold'), stack.byoHoldDid, 'the hold the images live in (her own)');
  assert.equal(await page.locator('table.tags td.age').first().textContent(), 'just now');
  assert.ok(!Number.isNaN(Date.parse(await page.locator('table.tags td.age time').first().getAttribute('datetime'))));
  await page.click('a[rel="next"]');
  assert.equal((await tagsShown()).length, 5);
  assert.match(await page.textContent('p.tag-count'), /26–30 shown/);

  await page.click('nav.sort a:text("name")');
  assert.deepEqual((await tagsShown()).slice(0, 3), ['t01', 't02', 't03'], 'by name');
  assert.equal(await page.locator('table.tags tbody tr', { has: page.locator('td.tag', { hasText: 't01' }) }).locator('td.digest code').getAttribute('title'), first.manifest);

  // Copy buttons appear with the clipboard, and copy what they sit by.
  await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(stack.urls.appview).origin });
  await page.click('button[data-copy-from="pull-command"]');
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), (await page.textContent('code.pull')).trim());
  await page.locator('td.digest button.copy').first().click();
  assert.match(await page.evaluate(() => navigator.clipboard.readText()), /^sha256:[0-9a-f]{64}$/);
});

test('at phone width (360 px) the home, search, repository and manifest pages fit the screen', async () => {
  const phone = await browser.newPage({ viewport: { width: 360, height: 780 } });
  try {
    for (const p of ['/', `/search?q=${alice.handle}`, `/r/${alice.handle}/webapp`, `/r/${alice.handle}/many`, `/r/${alice.handle}/webapp/v1`]) {
      assert.equal((await phone.goto(url(p))).status(), 200, p);
      const width = await phone.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= 360, `${p} is ${width} px wide`);
    }
  } finally {
    await phone.close();
  }
});

/**
 * Where page screenshots go: ATCR_SCREENSHOTS, else target/screenshots.
 * Other test files that show pages (sign-in, devices) save theirs there too.
 */
const SCREENSHOTS = process.env.ATCR_SCREENSHOTS ?? path.join(ROOT, 'target', 'screenshots');

/** Saves the page `p` shows as `<name>-<width>-<scheme>.png` at 1280 and 390 px, light and dark. */
async function screenshots(p, name) {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  for (const colorScheme of ['light', 'dark']) {
    for (const width of [1280, 390]) {
      await p.emulateMedia({ colorScheme });
      await p.setViewportSize({ width, height: 900 });
      const scrollWidth = await p.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(scrollWidth <= width, `${name} is ${scrollWidth} px wide at ${width} px`);
      await p.screenshot({ path: path.join(SCREENSHOTS, `${name}-${width}-${colorScheme}.png`), fullPage: true });
    }
  }
}

test('every page in light and dark at 1280 and 390 px: dark follows the system, and each is saved as a screenshot', async () => {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  const pages = {
    home: '/', search: `/search?q=${alice.handle}`, repository: `/r/${alice.handle}/documented`,
    manifest: `/r/${alice.handle}/webapp/multi`, user: `/u/${alice.handle}`, 'sign-in': '/login',
  };
  const backgrounds = {};
  for (const colorScheme of ['light', 'dark']) {
    for (const width of [1280, 390]) {
      const context = await browser.newContext({ viewport: { width, height: 900 }, colorScheme });
      const shot = await context.newPage();
      try {
        for (const [name, p] of Object.entries(pages)) {
          assert.equal((await shot.goto(url(p))).status(), 200, p);
          const scrollWidth = await shot.evaluate(() => document.documentElement.scrollWidth);
          assert.ok(scrollWidth <= width, `${p} is ${scrollWidth} px wide at ${width} px`);
          await shot.screenshot({ path: path.join(SCREENSHOTS, `${name}-${width}-${colorScheme}.png`), fullPage: true });
        }
        backgrounds[colorScheme] = await shot.evaluate(() => getComputedStyle(document.body).backgroundColor);
      } finally {
        await context.close();
      }
    }
  }
  const luminance = (rgb) => rgb.match(/\d+/g).slice(0, 3).reduce((sum, c) => sum + Number(c), 0) / 3;
  assert.ok(luminance(backgrounds.light) > 200, `light background ${backgrounds.light}`);
  assert.ok(luminance(backgrounds.dark) < 50, `dark background ${backgrounds.dark}`);
  assert.equal(fs.readdirSync(SCREENSHOTS).filter((f) => /-(1280|390)-(light|dark)\.png$/.test(f) && pages[f.replace(/-(1280|390)-(light|dark)\.png$/, '')]).length, 24);
});

const stars = () => queryD1(stack.appviewStateDir, `SELECT * FROM stars WHERE owner_did = '${alice.did}' AND repository = 'documented'`);
const starRecords = async (account) => (await listAllRecords(stack.urls.pds, account.did, 'io.atcr.sailor.star'))
  .filter((r) => r.value.subject?.did === alice.did && r.value.subject?.repository === 'documented');

test('bob signs in, finds alice\'s repository by search, reads it and a manifest, stars it (a record in his PDS, the count rises) and unstars it without a reload', async () => {
  const bob = stack.accounts.bob;
  const context = await browser.newContext();
  const p = await context.newPage();
  try {
    await signInWithOAuth(p, stack, bob, { returnTo: '/' });
    await p.fill('input[name=q]', 'documented');
    await p.press('input[name=q]', 'Enter');
    await p.waitForURL(/\/search\?q=documented/);
    await p.click(`a.repo-name[href="/r/${alice.handle}/documented"]`);
    await p.waitForURL(url(`/r/${alice.handle}/documented`));
    assert.match(await p.textContent('section.description'), /Serves pages/);
    assert.deepEqual(await p.locator('table.tags td.tag').allTextContents(), ['v1']);
    await p.click('table.tags td.tag a');
    await p.waitForURL(url(`/r/${alice.handle}/documented/v1`));
    assert.match(await p.textContent('main'), /Layers/);
    await p.goBack();

    const button = p.locator('form.star button');
    assert.equal(await button.getAttribute('aria-pressed'), 'false');
    assert.equal(await p.textContent('form.star .star-count'), '0 stars');
    const before = p.url();
    await button.click();
    await p.locator('form.star button[aria-pressed="true"]').waitFor();
    assert.equal(p.url(), before, 'no reload');
    assert.equal(await p.textContent('form.star .star-count'), '1 star');
    const [record] = await starRecords(bob);
    assert.ok(record, 'the star is a record in bob\'s PDS');
    assert.match(record.value.createdAt, /^\d{4}-/);
    assert.deepEqual(stars().map((r) => [r.starrer_did, r.record_uri]), [[bob.did, record.uri]]);
    // The page knows it after a reload; home and bob's page list it.
    await p.reload();
    assert.equal(await button.textContent(), '★ Starred');
    await p.goto(url('/'));
    assert.equal(await p.locator(`section.starred a.repo-name[href="/r/${alice.handle}/documented"]`).count(), 1);
    assert.match(await p.locator('section.starred li').first().textContent(), /1 star/);
    await p.goto(url(`/u/${bob.handle}`));
    assert.equal((await p.goto(url(`/u/${bob.handle}`))).status(), 200);
    assert.equal(await p.locator(`section.starred a.repo-name[href="/r/${alice.handle}/documented"]`).count(), 1);

    await p.goto(url(`/r/${alice.handle}/documented`));
    await button.click();
    await p.locator('form.star button[aria-pressed="false"]').waitFor();
    assert.equal(await p.textContent('form.star .star-count'), '0 stars');
    assert.deepEqual(await starRecords(bob), [], 'unstarring deletes the record');
    assert.deepEqual(stars(), []);

    // Without JavaScript the same form stars and comes back to the page.
    const plain = await browser.newContext({ javaScriptEnabled: false });
    try {
      await plain.addCookies(await context.cookies(stack.urls.appview));
      const q = await plain.newPage();
      await q.goto(url(`/r/${alice.handle}/documented`));
      await q.click('form.star button');
      await q.waitForURL(url(`/r/${alice.handle}/documented`));
      assert.equal(await q.textContent('form.star button'), '★ Starred');
      assert.equal((await starRecords(bob)).length, 1);
      await q.click('form.star button');
      await q.waitForURL(url(`/r/${alice.handle}/documented`));
      assert.equal(await q.textContent('form.star button'), '☆ Star');
      assert.deepEqual(await starRecords(bob), []);
    } finally {
      await plain.close();
    }

    // Refused, nothing written: another site's form, a form without this
    // session's token, a repository nobody has; signed out, it asks to sign in.
    const cookie = (await context.cookies(stack.urls.appview)).map((c) => `${c.name}=${c.value}`).join('; ');
    const csrf = await p.getAttribute('form.star input[name=csrf]', 'value');
    const form = (fields) => new URLSearchParams({ owner: alice.did, repository: 'documented', action: 'star', page: `/r/${alice.handle}/documented`, csrf, ...fields });
    const post = (body, headers) => fetch(url('/star'), { method: 'POST', redirect: 'manual', body, headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers } });
    const origin = new URL(stack.urls.appview).origin;
    assert.equal((await post(form(), { cookie, origin: 'https://elsewhere.example' })).status, 403);
    assert.equal((await post(form({ csrf: 'forged' }), { cookie, origin })).status, 403);
    assert.equal((await post(form({ repository: 'nothing-here' }), { cookie, origin })).status, 404);
    const signedOut = await post(form(), { origin });
    assert.equal(signedOut.status, 303);
    assert.equal(signedOut.headers.get('location'), `/login?return_to=${encodeURIComponent(`/r/${alice.handle}/documented`)}`);
    assert.deepEqual(await starRecords(bob), []);
    assert.deepEqual(stars(), []);
  } finally {
    await context.close();
  }
});

test('settings: alice changes her default hold (her next push goes there), registers her hold, adds bob to its crew (he can then push to it), describes a repository with a preview, and forgets her app-password session', async () => {
  const signedOut = await fetch(url('/settings'), { redirect: 'manual' });
  assert.equal(signedOut.status, 303);
  assert.equal(signedOut.headers.get('location'), '/login?return_to=%2Fsettings');

  const context = await browser.newContext();
  const p = await context.newPage();
  const record = (collection, rkey) => xrpc(stack.urls.pds, 'com.atproto.repo.getRecord', {
    params: { repo: alice.did, collection, rkey }, expect: [200, 400],
  });
  const holdOfPush = async (repo) => {
    const name = `${alice.handle}/${repo}`;
    const pushed = await pushImage(stack, name, 'v1', await registryToken(stack, `repository:${name}:pull,push`, alice));
    return queryD1(stack.appviewStateDir, `SELECT hold_did FROM manifests WHERE owner_did = '${alice.did}' AND repository = '${repo}' AND digest = '${pushed.manifest}'`)[0]?.hold_did;
  };
  try {
    await signInWithOAuth(p, stack, alice, { returnTo: '/settings' });
    await p.waitForURL(url('/settings'));
    assert.equal(await p.textContent('#hold code.current-hold'), stack.byoHoldDid);

    // The default hold: the profile record changes, and the next push goes there.
    await p.fill('#hold-input', stack.urls.hold);
    await p.click('#hold button[type=submit]');
    await p.waitForURL(/saved=hold/);
    assert.equal(await p.textContent('#hold code.current-hold'), stack.holdDid);
    assert.equal((await record('io.atcr.sailor.profile', 'self')).value.defaultHold, stack.holdDid);
    assert.equal(await holdOfPush('moved'), stack.holdDid);
    await p.fill('#hold-input', stack.byoHoldDid);
    await p.click('#hold button[type=submit]');
    await p.waitForURL(/saved=hold/);
    assert.equal(await holdOfPush('moved-back'), stack.byoHoldDid);
    // Something that is no hold is refused with the reason; nothing changes.
    await p.fill('#hold-input', stack.urls.pds);
    await p.click('#hold button[type=submit]');
    assert.match(await p.textContent('p.error'), /cannot be your hold/);
    assert.equal((await record('io.atcr.sailor.profile', 'self')).value.defaultHold, stack.byoHoldDid);

    // Registering the hold she runs writes an io.atcr.hold record.
    await p.goto(url('/settings'));
    // Public, as it was: the record's flag is the hold's policy from now on.
    await p.fill('#register-hold', stack.urls.byoHold);
    await p.check('#holds input[name=public]');
    await p.click('#holds button[type=submit]');
    await p.waitForURL(/saved=holds/);
    const holds = await listAllRecords(stack.urls.pds, alice.did, 'io.atcr.hold');
    const registered = holds.find((r) => r.value.endpoint === stack.urls.byoHold);
    assert.ok(registered, 'an io.atcr.hold record names her hold');
    assert.equal(registered.value.owner, alice.did);
    assert.equal(registered.value.public, true);
    assert.match(await p.textContent('#holds ul'), new RegExp(stack.urls.byoHold.replace(/[.]/g, '\\.')));

    // Crew: bob may not push to her hold, then may, then may not again.
    const bob = stack.accounts.bob;
    const bobSession = await login(stack.urls.pds, bob);
    const hold = new HoldClient(stack.urls.byoHold);
    const bobStarts = async () => (await hold.call('io.atcr.hold.startUpload', {
      token: await serviceToken(stack.urls.pds, bobSession, stack.byoHoldDid, 'io.atcr.hold.startUpload'), body: {},
    })).status;
    const until = async (status) => {
      const deadline = Date.now() + 15_000;
      let last;
      while ((last = await bobStarts()) !== status) {
        assert.ok(Date.now() < deadline, `bob's upload start answered ${last}, not ${status}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    assert.equal(await bobStarts(), 403);
    await p.fill('#crew-member', bob.handle);
    await p.click('#crew form[action="/settings/crew"] button[type=submit]');
    await p.waitForURL(/saved=crew/);
    const crew = () => listAllRecords(stack.urls.pds, alice.did, 'io.atcr.hold.crew');
    assert.ok((await crew()).some((r) => r.value.member === bob.did), 'a crew record names bob');
    assert.match(await p.textContent('#crew ul.crew'), new RegExp(bob.did));
    await until(200);
    await p.click(`#crew form.inline:has(input[value="${bob.did}"]) button`);
    await p.waitForURL(/saved=crew/);
    assert.ok(!(await crew()).some((r) => r.value.member === bob.did), 'no crew record names bob');
    await until(403);

    // A description: previewed (nothing written), then saved.
    await p.goto(url('/settings?repository=moved'));
    const text = '# Documented anew\n\nNow with **zebras**. <script>document.title="owned"</script>';
    await p.fill('#description-text', text);
    await p.click('#description button[value=preview]');
    assert.equal(await p.textContent('.description.preview h1'), 'Documented anew');
    assert.equal(await p.locator('.description.preview script').count(), 0);
    assert.equal((await record('io.atcr.repo.page', 'moved')).value, undefined, 'a preview writes nothing');
    await p.click('#description button[value=save]');
    await p.waitForURL(/saved=description/);
    assert.equal((await record('io.atcr.repo.page', 'moved')).value.description, text);
    await p.goto(url(`/r/${alice.handle}/moved`));
    assert.match(await p.textContent('section.description'), /Now with zebras/);
    assert.notEqual(await p.title(), 'owned');
    await p.goto(url('/search?q=zebras'));
    assert.equal(await p.locator(`a.repo-name[href="/r/${alice.handle}/moved"]`).count(), 1);

    // The app-password session docker login opened is shown and forgotten.
    const appPassword = () => queryD1(stack.appviewStateDir, `SELECT kind FROM pds_sessions WHERE did = '${alice.did}'`);
    assert.deepEqual(appPassword().map((r) => r.kind), ['app_password']);
    await p.goto(url('/settings'));
    await p.click('#sign-ins button[type=submit]');
    await p.waitForURL(/saved=sign-ins/);
    assert.deepEqual(appPassword(), []);

    // Refused, nothing written: another site's form, a form without this session's token.
    const cookie = (await context.cookies(stack.urls.appview)).map((c) => `${c.name}=${c.value}`).join('; ');
    const csrf = await p.getAttribute('#hold input[name=csrf]', 'value');
    const post = (fields, headers) => fetch(url('/settings/hold'), {
      method: 'POST', redirect: 'manual', body: new URLSearchParams({ hold: stack.holdDid, csrf, ...fields }),
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie, ...headers },
    });
    assert.equal((await post({}, { origin: 'https://elsewhere.example' })).status, 403);
    assert.equal((await post({ csrf: 'forged' }, { origin: new URL(stack.urls.appview).origin })).status, 403);
    assert.equal((await record('io.atcr.sailor.profile', 'self')).value.defaultHold, stack.byoHoldDid);
    await p.goto(url('/settings'));
    await screenshots(p, 'settings');
    await p.goto(url('/settings/devices'));
    await screenshots(p, 'devices');
  } finally {
    await context.close();
  }
});

test('the hold alice registered in settings is on /holds and her page at once (written through: no Jetstream here), and both fit 360 px', async () => {
  // The settings test left her profile naming her own hold, the hold registered (public) and her crew empty.
  assert.deepEqual(queryD1(stack.appviewStateDir, `SELECT default_hold FROM profiles WHERE did = '${alice.did}'`), [{ default_hold: stack.byoHoldDid }]);
  assert.deepEqual(queryD1(stack.appviewStateDir, `SELECT hold_did, endpoint, public FROM holds WHERE owner_did = '${alice.did}'`),
    [{ hold_did: stack.byoHoldDid, endpoint: stack.urls.byoHold, public: 1 }]);
  assert.deepEqual(queryD1(stack.appviewStateDir, `SELECT * FROM crew WHERE owner_did = '${alice.did}'`), [], 'removing bob wrote through too');
  const phone = await browser.newPage({ viewport: { width: 360, height: 780 } });
  try {
    assert.equal((await phone.goto(url('/'))).status(), 200);
    await phone.click('footer a[href="/holds"]');
    await phone.waitForURL(url('/holds'));
    const row = phone.locator('table.holds tbody tr', { has: phone.locator('code.endpoint', { hasText: stack.urls.byoHold }) });
    assert.equal(await row.count(), 1);
    assert.equal(await row.locator('td.owner').textContent(), alice.handle);
    assert.equal(await row.locator('td.access').textContent(), 'public');
    assert.equal(await row.locator('td.crew').textContent(), '0');
    assert.equal(await row.locator('code.did').textContent(), stack.byoHoldDid);
    for (const p of ['/holds', `/u/${alice.handle}`]) {
      assert.equal((await phone.goto(url(p))).status(), 200, p);
      const width = await phone.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= 360, `${p} is ${width} px wide`);
    }
    assert.equal(await phone.textContent('p.default-hold code'), stack.byoHoldDid);
    assert.equal(await phone.locator('section.holds code.endpoint').textContent(), stack.urls.byoHold);
    await phone.goto(url('/holds'));
    await screenshots(phone, 'holds');
  } finally {
    await phone.close();
  }
});

test('an unknown user or repository is a 404 page that says what to do next', async () => {
  for (const [p, said] of [['/u/nobody.test', /No user nobody\.test/], [`/r/${alice.handle}/nothing-here`, /No repository/]]) {
    const res = await page.goto(url(p));
    assert.equal(res.status(), 404, p);
    assert.match(await page.textContent('main'), said);
    assert.equal(await page.locator('main a[href="/search"]').count(), 1, `${p} offers a search`);
    assert.equal(await page.locator('main a[href="/"]').count(), 1, `${p} leads home`);
  }
});

test('the home page lists the most pulled repositories', async () => {
  await page.goto(url('/'));
  const popular = page.locator('section.popular');
  assert.match(await popular.locator('h2').textContent(), /Most pulled/);
  assert.equal(await popular.locator(`a.repo-name[href="/r/${alice.handle}/webapp"]`).count(), 1);
  assert.match(await popular.locator('li').first().textContent(), /2 pulls/);
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

test('search ranks the words of owner, name and description, counts and pages the results; any query is safe', async () => {
  const links = () => page.locator('a.repo-name').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
  // By the image's own description (org.opencontainers.image.description).
  await page.goto(url('/search?q=TINY'));
  assert.deepEqual(await links(), [`/r/${alice.handle}/described`]);
  assert.equal((await page.textContent('.result-count')).trim(), '1 repository');

  // Repositories the index knows from elsewhere (as the network index adds them).
  const rows = Array.from({ length: 25 }, (_, i) => `('${alice.did}', 'paged-${String(i).padStart(2, '0')}', 'bulk', 0, ${i})`);
  rows.push(`('${alice.did}', 'zz-mentions', 'a needle in the description', 0, 100)`, `('${alice.did}', 'needle', NULL, 0, 0)`);
  queryD1(stack.appviewStateDir, `INSERT INTO repositories (owner_did, name, description, created_at, updated_at) VALUES ${rows.join(', ')}`);

  // A name outranks a description.
  await page.goto(url('/search?q=needle'));
  assert.deepEqual(await links(), [`/r/${alice.handle}/needle`, `/r/${alice.handle}/zz-mentions`]);

  // 20 a page, with the count, and the way on and back.
  await page.goto(url('/search?q=paged'));
  assert.equal((await page.textContent('.result-count')).trim(), '25 repositories, 1–20 shown');
  const first = await links();
  assert.equal(first.length, 20);
  assert.equal(await page.locator('a[rel=prev]').count(), 0);
  await page.click('a[rel=next]');
  await page.waitForURL(/page=2/);
  const second = await links();
  assert.equal(second.length, 5);
  assert.equal((await page.textContent('.result-count')).trim(), '25 repositories, 21–25 shown');
  assert.deepEqual([...first, ...second].sort(), rows.slice(0, 25).map((_, i) => `/r/${alice.handle}/paged-${String(i).padStart(2, '0')}`));
  assert.equal(await page.locator('a[rel=next]').count(), 0);
  assert.equal(await page.locator('a[rel=prev]').count(), 1);

  // The owner's handle finds their repositories; FTS5 syntax is only text.
  await page.goto(url(`/search?q=${encodeURIComponent(alice.handle)}`));
  assert.ok(Number((await page.textContent('.result-count')).match(/\d+/)[0]) >= 29);
  for (const q of ['"a" OR NEAR(b c) -d ^e *', 'paged" OR "x', '***', 'a'.repeat(2000)]) {
    const res = await page.goto(url(`/search?q=${encodeURIComponent(q)}`));
    assert.equal(res.status(), 200, q);
  }
  await page.goto(url('/search?q=paged%22%20OR%20%22x'));
  assert.match(await page.textContent('main'), /No repository matches/, 'quotes are not operators');
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
  assert.equal(await description.locator('script').count(), 0, 'nothing of the description runs');
  assert.notEqual(await description.locator('a', { hasText: 'click' }).getAttribute('href'), 'javascript:document.title="owned"');
  await description.locator('a', { hasText: 'click' }).click().catch(() => {});
  assert.notEqual(await page.title(), 'owned');

  assert.equal((await page.goto(url(`/r/${alice.handle}/described`))).status(), 200);
  assert.equal((await page.locator('section.description').textContent()).trim(), 'A tiny <b>test</b> image');
  assert.equal(await page.locator('section.description b').count(), 0);
});

test('a manifest page shows an image\'s configuration, layers and referrers, an index\'s platforms, and the pull command by digest', async () => {
  const rich = `${alice.handle}/rich`;
  const token = await registryToken(stack, `repository:${rich}:pull,push`, alice);
  const config = Buffer.from(JSON.stringify({
    architecture: 'arm64', os: 'linux', created: '2026-11-30T12:00:00Z',
    config: {
      Env: ['PATH=/usr/bin', 'GREETING=<b>hi</b>'], Entrypoint: ['/bin/serve'], Cmd: ['--port', '8080'],
      User: 'app', WorkingDir: '/srv',
      Labels: { 'org.opencontainers.image.source': 'https://example.com/src', note: '<img src=x onerror=alert(1)>' },
    },
    rootfs: { type: 'layers', diff_ids: [] },
  }));
  const layers = [Buffer.alloc(1500, 1), Buffer.alloc(2500, 2)];
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: await pushBlob(stack, rich, config, token), size: config.length },
    layers: await Promise.all(layers.map(async (l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: await pushBlob(stack, rich, l, token), size: l.length }))),
  }));
  const put = (reference, body) => fetch(new URL(`/v2/${rich}/manifests/${reference}`, stack.urls.appview), {
    method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': OCI_MANIFEST }, body,
  });
  const pushed = await put('v1', manifest);
  assert.equal(pushed.status, 201, await pushed.text());
  const digest = pushed.headers.get('docker-content-digest');
  const empty = Buffer.from('{}');
  const sbom = Buffer.from('{"spdxVersion":"SPDX-2.3"}');
  const referrer = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: 'application/spdx+json',
    config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: await pushBlob(stack, rich, empty, token), size: 2 },
    layers: [{ mediaType: 'application/spdx+json', digest: await pushBlob(stack, rich, sbom, token), size: sbom.length }],
    subject: { mediaType: OCI_MANIFEST, digest, size: manifest.length },
  }));
  const sbomDigest = `sha256:${(await import('node:crypto')).createHash('sha256').update(referrer).digest('hex')}`;
  assert.equal((await put(sbomDigest, referrer)).status, 201);

  // From the repository page, the tag links to its manifest page.
  await page.goto(url(`/r/${rich}`));
  await page.locator('td.tag a', { hasText: 'v1' }).click();
  await page.waitForURL(url(`/r/${rich}/v1`));
  const main = page.locator('main');
  assert.match(await page.textContent('code.pull'), new RegExp(`^docker pull ${service.replace(/[.]/g, '\\.')}/${rich}@${digest}$`));
  const facts = Object.fromEntries(await page.locator('section.config dt').evaluateAll((dts) => dts.map((dt) => [dt.textContent, dt.nextElementSibling.textContent])));
  assert.deepEqual(facts, { Platform: 'linux/arm64', Created: '2026-11-30 12:00 UTC', Entrypoint: '/bin/serve', Command: '--port 8080', User: 'app', 'Working directory': '/srv' });
  assert.deepEqual(await page.locator('ul.env li').allTextContents(), ['PATH=/usr/bin', 'GREETING=<b>hi</b>']);
  assert.match(await page.locator('table.labels').textContent(), /<img src=x onerror=alert\(1\)>/, 'a label is shown as text');
  assert.equal(await main.locator('section.config img, section.config b').count(), 0);
  const layerRows = await page.locator('table.layers tbody tr').allTextContents();
  assert.equal(layerRows.length, 2);
  assert.match(layerRows[0], /application\/vnd\.oci\.image\.layer\.v1\.tar\s*1\.5 kB/);
  assert.match(await page.textContent('p.meta'), /image · 4\.\d kB/);
  // The SBOM refers to it, and its own page says what it is.
  await page.locator('table.referrers a').click();
  await page.waitForURL(url(`/r/${rich}/${sbomDigest}`));
  assert.match(await page.textContent('p.meta'), /artifact \(application\/spdx\+json\)/);

  // An index lists its platforms, each linking to its own manifest.
  await page.goto(url(`/r/${alice.handle}/webapp/multi`));
  const platforms = await page.locator('table.platforms a').allTextContents();
  assert.deepEqual(platforms, ['linux/amd64', 'linux/arm64']);
  await page.locator('table.platforms a', { hasText: 'linux/arm64' }).click();
  await page.waitForURL(/\/r\/alice\.test\/webapp\/sha256:/);
  assert.match(await page.textContent('p.meta'), /^image/);
  assert.equal(await page.locator('section.config dd').first().textContent(), 'linux/arm64');

  const missing = await page.goto(url(`/r/${rich}/no-such-tag`));
  assert.equal(missing.status(), 404);
  assert.match(await page.textContent('main'), /has no manifest no-such-tag/);
});
