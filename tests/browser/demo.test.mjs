// The demo page (web-demo/) in a real headless Chromium, against a running gateway.
//
//   EDGENN_URL=http://127.0.0.1:8080 node --test tests/browser/
//
// scripts/test-browser.sh installs what this needs (Debian's chromium, playwright-core from
// npm), starts the gateway with the classify, predict and digits apps, and runs it. Chromium
// is Debian's /usr/bin/chromium (CHROMIUM overrides), driven by playwright-core; nothing is
// downloaded, and any request the page makes outside the gateway fails the test.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BASE = (process.env.EDGENN_URL || '').replace(/\/+$/, '');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT = path.join(REPO, 'target/browser/demo.png');
const CATS = ['tabby', 'tiger cat', 'Egyptian cat'];
const TIMEOUT = 30_000;

if (!BASE) {
  throw new Error('EDGENN_URL is not set: the URL of a running gateway, e.g. http://127.0.0.1:8080');
}

let userDataDir;
let context;
let page;
const problems = []; // console errors, page errors, failed or foreign requests
const httpErrors = []; // 4xx/5xx answers the page got (Chromium logs them as console errors)

before(async () => {
  userDataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'edgenn-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-quic',
      '--no-first-run',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
    deviceScaleFactor: 1,
    timeout: TIMEOUT,
  });
  context.setDefaultTimeout(TIMEOUT);
  const origin = new URL(BASE).origin;
  // Nothing may come from anywhere but the gateway.
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (new URL(url).origin === origin) return route.continue();
    problems.push(`request outside the gateway: ${url}`);
    return route.abort();
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    if (msg.text().startsWith('Failed to load resource')) httpErrors.push(`${msg.location().url}: ${msg.text()}`);
    else problems.push(`console error: ${msg.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => {
    // Type-ahead aborts its stale requests on purpose.
    if (!r.url().includes('/v1/predict')) problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
  });
  const response = await page.goto(`${BASE}/`);
  assert.equal(response.status(), 200, 'GET /');
  assert.equal(await page.title(), 'edgenn demo');
});

after(async () => {
  await context?.close();
  if (userDataDir) await fs.rm(userDataDir, { recursive: true, force: true });
});

test('the page loads its script and stylesheet from /demo/', async () => {
  for (const asset of ['/demo/app.js', '/demo/style.css']) {
    const r = await page.request.get(`${BASE}${asset}`);
    assert.equal(r.status(), 200, asset);
  }
  // The stylesheet applied: cards are laid out in a grid.
  const display = await page.$eval('main', (el) => getComputedStyle(el).display);
  assert.equal(display, 'grid');
});

test('image classification: chelsea.jpg is a cat', async () => {
  await page.setInputFiles('#classify-file', path.join(REPO, 'tests/data/chelsea.jpg'));
  await page.waitForFunction(() => document.querySelectorAll('#classify-results [data-testid="classify-row"]').length === 5);
  const rows = await page.$$eval('#classify-results [data-testid="classify-row"]', (lis) =>
    lis.map((li) => ({
      label: li.querySelector('.bar-label').textContent,
      value: li.querySelector('.bar-value').textContent,
    })),
  );
  assert.ok(CATS.includes(rows[0].label), `top label ${rows[0].label}`);
  assert.match(rows[0].value, /^\d+(\.\d)?%$/);
  assert.ok(await page.isVisible('#classify-preview'), 'preview shown');
  const latency = await page.textContent('#classify-latency');
  assert.match(latency, /ms round trip · guest [\d.]+ ms, inference [\d.]+ ms/);
  assert.ok(await page.isHidden('#classify-error'));

  // Another backend: the same image again, through tract.
  await page.selectOption('#classify-backend', 'tract');
  await page.waitForFunction(() => document.querySelector('#classify-latency').textContent.endsWith('tract'));
  const top = await page.textContent('#classify-results [data-testid="classify-row"] .bar-label');
  assert.ok(CATS.includes(top), `top label with tract ${top}`);

  // Not an image: the app's JSON error is shown.
  await page.setInputFiles('#classify-file', path.join(REPO, 'tests/data/not-an-image.txt'));
  await page.waitForSelector('#classify-error:not([hidden])');
  assert.match(await page.textContent('#classify-error'), /^415: .*not a JPEG, PNG or WebP/);
  await page.setInputFiles('#classify-file', path.join(REPO, 'tests/data/chelsea.jpg'));
  await page.waitForSelector('#classify-error', { state: 'hidden' });
  await page.waitForFunction(() => document.querySelectorAll('#classify-results [data-testid="classify-row"]').length === 5);
});

/** The suggestions shown for exactly `text`. */
async function suggestionsFor(text) {
  await page.waitForFunction(
    (t) => {
      const list = document.querySelector('#predict-suggestions');
      return list.dataset.text === t && list.children.length > 0;
    },
    text,
  );
  return page.$$eval('#predict-suggestions [data-testid="predict-suggestion"]', (lis) =>
    lis.map((li) => ({ word: li.dataset.word, selected: li.getAttribute('aria-selected') === 'true' })),
  );
}

test('type-ahead: completes a word, Tab and Enter accept, arrows move', async () => {
  const input = '#predict-input';
  await page.click(input);
  await page.keyboard.type('she was not acq', { delay: 25 });
  const completions = await suggestionsFor('she was not acq');
  const words = completions.map((s) => s.word);
  assert.ok(words.length >= 2 && words.length <= 5, words.join(' '));
  assert.ok(words.every((w) => w.startsWith('acq')), words.join(' '));
  assert.ok(words.includes('acquainted'), words.join(' '));
  assert.equal(completions[0].selected, true, 'the first suggestion is selected');
  assert.equal(await page.getAttribute('#predict-suggestions', 'data-completing'), 'acq');

  await page.keyboard.press('Tab');
  assert.equal(await page.inputValue(input), 'she was not acquainted ');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'predict-input', 'focus stays');

  // Next-word suggestions for the accepted text; ArrowDown selects the second, Enter takes it.
  const next = await suggestionsFor('she was not acquainted ');
  assert.ok(next.length >= 2);
  await page.keyboard.press('ArrowDown');
  const selected = await page.$$eval('#predict-suggestions [aria-selected="true"]', (lis) => lis.map((li) => li.dataset.word));
  assert.deepEqual(selected, [next[1].word]);
  await page.keyboard.press('ArrowUp');
  await page.keyboard.press('ArrowUp'); // wraps around to the last
  const last = await page.$$eval('#predict-suggestions [aria-selected="true"]', (lis) => lis.map((li) => li.dataset.word));
  assert.deepEqual(last, [next.at(-1).word]);
  await page.keyboard.press('ArrowDown'); // back to the first
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('Enter');
  assert.equal(await page.inputValue(input), `she was not acquainted ${next[1].word} `);
  assert.match(await page.textContent('#predict-latency'), /ms round trip/);

  // Clicking a suggestion accepts it too.
  const more = await suggestionsFor(`she was not acquainted ${next[1].word} `);
  await page.click(`#predict-suggestions [data-word="${more[2].word}"]`);
  assert.equal(await page.inputValue(input), `she was not acquainted ${next[1].word} ${more[2].word} `);
});

/** Draws strokes (polylines in a unit box) on the digits canvas with the mouse. */
async function draw(strokes) {
  const box = await page.locator('#digits-canvas').boundingBox();
  const at = ([x, y]) => [box.x + x * box.width, box.y + y * box.height];
  for (const stroke of strokes) {
    const [x0, y0] = at(stroke[0]);
    await page.mouse.move(x0, y0);
    await page.mouse.down();
    for (const point of stroke.slice(1)) {
      const [x, y] = at(point);
      await page.mouse.move(x, y, { steps: 4 });
    }
    await page.mouse.up();
  }
}

async function recognised() {
  await page.waitForFunction(() => {
    const card = document.querySelector('#digits');
    return !card.dataset.busy && document.querySelector('#digits-result').dataset.digit !== undefined;
  });
  return {
    digit: Number(await page.getAttribute('#digits-result', 'data-digit')),
    bars: await page.$$eval('#digits-probabilities [data-testid="digits-row"]', (lis) =>
      lis.map((li) => ({
        label: li.querySelector('.bar-label').textContent,
        value: li.querySelector('.bar-value').textContent,
        best: li.classList.contains('best'),
      })),
    ),
  };
}

test('digits: drawn digits are recognised', async (t) => {
  const spec = JSON.parse(await fs.readFile(path.join(REPO, 'guests/digits/testdata/strokes.json'), 'utf8'));
  // Recognise with nothing drawn: a message, no request.
  await page.click('#digits-clear');
  await page.click('#digits-recognise');
  assert.equal(await page.textContent('#digits-error'), 'Draw a digit first.');

  const seen = {};
  // Every digit of the hand-made strokes (the model reads all of them right offline; see
  // guests/digits/model/PROVENANCE.md), the 1 first; the last one stays on the page.
  for (const digit of ['1', '0', '2', '3', '4', '5', '6', '7', '8', '9']) {
    await page.click('#digits-clear');
    await draw(spec.digits[digit]);
    const answer = await recognised(); // recognised when the pen lifts
    seen[digit] = answer.digit;
    t.diagnostic(`drew ${digit}: read ${answer.digit} (${answer.bars[answer.digit]?.value})`);
    assert.equal(answer.bars.length, 10);
    assert.deepEqual(answer.bars.map((b) => b.label), ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    assert.deepEqual(answer.bars.filter((b) => b.best).map((b) => b.label), [String(answer.digit)]);
  }
  assert.equal(seen['1'], 1, 'a plain vertical stroke is a 1');
  const wrong = Object.entries(seen).filter(([want, got]) => Number(want) !== got);
  assert.deepEqual(wrong, [], `recognised ${JSON.stringify(seen)}`);
  assert.match(await page.textContent('#digits-latency'), /pre-processing [\d.]+ ms, inference [\d.]+ ms/);
  assert.ok(await page.isHidden('#digits-error'));
});

test('deployed apps are listed', async () => {
  await page.waitForSelector('#apps-list tr[data-app="classify"]');
  const apps = await page.$$eval('#apps-list tr[data-testid="app-row"]', (rows) =>
    rows.map((tr) => ({ name: tr.dataset.app, text: tr.textContent })),
  );
  const names = apps.map((a) => a.name);
  for (const name of ['classify', 'predict', 'digits']) assert.ok(names.includes(name), names.join(' '));
  assert.match(apps.find((a) => a.name === 'classify').text, /\/v1\/classify.*efficientnet-lite0/);
  assert.match(apps.find((a) => a.name === 'predict').text, /\/v1\/predict.*wordlm/);
});

test('no errors, nothing from outside; screenshot', async () => {
  // Leave suggestions on screen for the picture.
  await page.fill('#predict-input', 'it is a truth universally acknowledged, that a single man in possession of a good ');
  await suggestionsFor('it is a truth universally acknowledged, that a single man in possession of a good ');
  await fs.mkdir(path.dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  assert.deepEqual(problems, []);
  // The only error answer: not-an-image.txt sent to /v1/classify on purpose.
  assert.equal(httpErrors.length, 1, httpErrors.join('\n'));
  assert.match(httpErrors[0], /\/v1\/classify.*415/);
});
