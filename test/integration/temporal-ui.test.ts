/**
 * What an operator sees in the Temporal Web UI: Debian's Chromium, driven by playwright-core,
 * opens the dev server's UI, lists the workflows filtered by `TokenState` (the list query in the
 * URL, as a bookmarked or shared link would carry it), opens one, and saves screenshots to
 * `.cache/screenshots/`. The assertions are on what the page shows.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { startTemporalDevServer, type TemporalDevServer } from '../../dev/temporal-dev-server.js';
import { workflowIdFor } from '../../workflows/messages.js';
import { eventually, startTokenStack, type TokenStack } from '../support/token-stack.js';

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOTS = join(import.meta.dirname, '..', '..', '.cache', 'screenshots');
// `make test` installs Chromium (system-deps): without it this test fails, naming the fix.
const missingBrowser = existsSync(CHROMIUM) ? null : `${CHROMIUM} is not installed: run make system-deps (Debian package chromium)`;

const GOOD = 'ui-orders';
const WRONG_SECRET = 'ui-billing';
const UNKNOWN = 'ui-legacy';
const SECRET = 'ui-orders-secret';

let iam: IamEmulator;
let stack: TokenStack;
/** Only when the shared dev server runs headless: one of our own, with its UI. */
let ownServer: TemporalDevServer | undefined;
let uiUrl: string;
let browser: Browser;

beforeAll(async () => {
  if (missingBrowser !== null) throw new Error(missingBrowser);
  uiUrl = inject('temporalUiUrl');
  if (uiUrl === '') {
    ownServer = await startTemporalDevServer();
    uiUrl = ownServer.uiUrl!;
  }
  iam = await startIamEmulator({
    tokenLifetimeSeconds: 300,
    clients: [
      { clientId: GOOD, clientSecret: SECRET },
      { clientId: WRONG_SECRET, clientSecret: 'the-real-billing-secret' },
    ],
  });
  stack = await startTokenStack({
    env: { GOOD_SECRET: SECRET, WRONG_SECRET: 'an-old-billing-secret', UNKNOWN_SECRET: 'whatever' },
    ...(ownServer !== undefined && { temporalAddress: ownServer.address }),
  });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  await mkdir(SCREENSHOTS, { recursive: true });
});

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
  await iam?.close();
  await ownServer?.stop();
});

test('the UI lists the rejected registrations by TokenState, and a workflow page tells its story without the secret', async () => {
  const registrations = [
    [GOOD, 'env:GOOD_SECRET'],
    [WRONG_SECRET, 'env:WRONG_SECRET'],
    [UNKNOWN, 'env:UNKNOWN_SECRET'],
  ] as const;
  for (const [clientId, secretRef] of registrations) {
    await stack.admin.register({ clientId, tokenUrl: iam.tokenUrl(), authMethod: 'client_secret_basic', secretRef });
  }
  // The UI reads visibility, which follows the workflows' search attribute upserts.
  await eventually(
    async () => ((await stack.admin.list({ state: 'credentials_rejected' })).length === 2 ? true : undefined),
    20_000,
    'two rejected in visibility',
  );
  await eventually(
    async () => ((await stack.admin.list({ state: 'active' })).length === 1 ? true : undefined),
    20_000,
    'one active in visibility',
  );

  const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
  try {
    const startedAt = Date.now();
    // The list query in the URL: what the filter bar writes, and what an operator bookmarks.
    const query = `TokenState="credentials_rejected" AND TaskQueue="${stack.taskQueue}"`;
    await page.goto(`${uiUrl}/namespaces/default/workflows?query=${encodeURIComponent(query)}`);
    const rejectedLink = page.getByRole('link', { name: workflowIdFor(WRONG_SECRET), exact: true });
    await rejectedLink.waitFor({ timeout: 30_000 });
    await expect.poll(() => workflowLinks(page), { timeout: 10_000 }).toEqual([workflowIdFor(UNKNOWN), workflowIdFor(WRONG_SECRET)].sort());
    const listText = await page.locator('main').innerText();
    expect(listText).toContain('"credentials_rejected"'); // the filter the page shows
    expect(listText).not.toContain(workflowIdFor(GOOD));
    const listShot = join(SCREENSHOTS, 'temporal-ui-rejected-list.png');
    await page.screenshot({ path: listShot });

    await rejectedLink.click();
    await page.waitForURL(new RegExp(`/workflows/${encodeURIComponent(workflowIdFor(WRONG_SECRET))}/`), { timeout: 30_000 });
    // The history: the input carries the secret's reference only.
    await expect.poll(() => page.locator('main').innerText(), { timeout: 30_000 }).toContain('"secretRef": "env:WRONG_SECRET"');
    const historyText = await page.locator('main').innerText();
    expect(historyText).toContain('Workflow Type\ntokenLifecycle');

    // User Metadata: the static summary and details, and the current details the workflow keeps
    // up to date (the UI renders each in a sandboxed frame, hence the text of every frame).
    await page.getByText('User Metadata', { exact: true }).click();
    const host = new URL(iam.url).host;
    await expect.poll(() => everyFrameText(page), { timeout: 30_000 }).toContain(`${WRONG_SECRET} · credentials_rejected`);
    const metadataText = await everyFrameText(page);
    expect(metadataText).toContain(`OAuth token for ${WRONG_SECRET} from ${host}`);
    expect(metadataText).toContain('Client credentials (client_secret_basic), secret from env');
    expect(metadataText).toMatch(/last error \(1 in a row\): credentials_rejected: Token endpoint answered 401 unauthorized_client/);
    expect(metadataText).toContain('parked: fix the credentials, then tokenctl resume or reconfigure');
    // A Markdown list, one item per line, the most urgent first.
    expect(metadataText).toMatch(
      /parked: fix the credentials, then tokenctl resume or reconfigure\n+last error \(1 in a row\)[^\n]*\n+token: none from this registration yet\n+endpoint \(client_secret_basic\): http/,
    );
    // Timer and activity summaries make the events read as a story.
    expect(metadataText).toContain('Token request (first token), numbered after the generation Redis holds');
    // docs/design.md, "No secret in Temporal", as the operator sees it: the page has the reference,
    // never the secret.
    for (const text of [historyText, metadataText]) {
      expect(text).not.toContain('an-old-billing-secret');
      expect(text).not.toContain('the-real-billing-secret');
    }
    const workflowShot = join(SCREENSHOTS, 'temporal-ui-rejected-workflow.png');
    await page.screenshot({ path: workflowShot, fullPage: true });
    console.log(`UI: list and workflow page checked in ${Date.now() - startedAt} ms; screenshots ${listShot} and ${workflowShot}`);
    expect(existsSync(listShot) && existsSync(workflowShot)).toBe(true);
  } finally {
    await page.close();
  }
}, 90_000);

/** The text of the page and of every frame in it, one after the other. */
async function everyFrameText(page: Page): Promise<string> {
  const texts = await Promise.all(
    page.frames().map((frame) =>
      frame
        .locator('body')
        .innerText()
        .catch(() => ''),
    ),
  );
  return texts.join('\n');
}

/** The workflow IDs the list shows, as links. */
async function workflowLinks(page: Page): Promise<string[]> {
  const texts = await page.getByRole('link', { name: /^token-lifecycle:/ }).allInnerTexts();
  return [...new Set(texts.map((t) => t.trim()))].sort();
}
