// Drives the Picket console in Debian's headless chromium, as an administrator would: run by
// tests/browser.rs against a real manager with one real agent. Every step waits on what the
// page shows (Playwright's auto-waiting), never on a fixed sleep, and throws on a miss.
//
// Environment: PICKET_URL (https://127.0.0.1:PORT), PICKET_PASSWORD (the one-time password),
// PICKET_AGENT_PID (killed mid-test to watch the computer go offline), PICKET_HOSTNAME (its
// computer), SCREENSHOTS (a folder for one PNG per page).
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const url = process.env.PICKET_URL;
const oneTime = process.env.PICKET_PASSWORD;
const agentPid = Number(process.env.PICKET_AGENT_PID);
const hostname = process.env.PICKET_HOSTNAME;
const shots = process.env.SCREENSHOTS;
const mine = 'a passphrase of my own';
// Offline detection takes an interval and its grace; the page then needs one refresh.
const SLOW = { timeout: 30_000 };

mkdirSync(shots, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const context = await browser.newContext({
  // The manager's certificate is signed by its data dir's own CA.
  ignoreHTTPSErrors: true,
  viewport: { width: 1280, height: 800 },
});
const page = await context.newPage();
const problems = [];
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
// Refused requests (a 401 before login, the 400s this test provokes) are logged by chromium as
// "Failed to load resource"; anything else on the console is a bug in the page.
page.on('console', (m) => {
  if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) {
    problems.push(`console error: ${m.text()}`);
  }
});

async function shot(name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

function step(what) {
  console.log(`- ${what}`);
}

async function expectText(locator, pattern, options = {}) {
  await locator.first().waitFor({ state: 'visible', ...options });
  const deadline = Date.now() + (options.timeout ?? 10_000);
  for (;;) {
    const text = (await locator.first().textContent()) ?? '';
    if (pattern.test(text)) return text;
    if (Date.now() > deadline) throw new Error(`expected ${pattern} in "${text}"`);
    await page.waitForTimeout(100);
  }
}

try {
  step('an unauthenticated visit lands on the login page');
  await page.goto(`${url}/alerts`);
  await page.waitForURL(/\/login\?next=/);
  await shot('login');

  step('a wrong password is refused next to the form');
  await page.fill('#username', 'admin');
  await page.fill('#password', 'not the password');
  await page.click('#login-button');
  await expectText(page.locator('.form-error, .field-error'), /wrong user name or password/);
  await shot('login-refused');

  step('the one-time password leads to choosing a password');
  await page.fill('#password', oneTime);
  await page.click('#login-button');
  await page.waitForURL(/\/account/);
  await shot('account-one-time');
  await expectText(page.locator('#must-change'), /one-time password/);
  // The server's refusal shows next to the field it names.
  await page.fill('#current-password', 'not the one-time password');
  await page.fill('#new-password', mine);
  await page.fill('#confirm-password', mine);
  await page.click('#change-password');
  await expectText(page.locator('[data-field="current_password"] + .field-error'), /current password is wrong/);
  await shot('account-error');
  await page.fill('#current-password', oneTime);
  await page.fill('#new-password', mine);
  await page.fill('#confirm-password', mine);
  await page.click('#change-password');
  await page.waitForURL((u) => !u.pathname.startsWith('/account'));

  step('the dashboard counts the online computer');
  await page.click('a[data-nav="dashboard"]');
  await page.waitForURL(`${url}/`);
  await expectText(page.locator('main'), /online/i);
  await shot('dashboard');

  step('the computers page shows the agent online, then offline without a reload');
  await page.click('a[data-nav="computers"]');
  const row = page.locator('tr[data-computer-id]', { hasText: hostname });
  await expectText(row.locator('td.status'), /online/);
  await shot('computers');
  const computerId = await row.first().getAttribute('data-computer-id');
  // A reload would lose this mark; the page's own refresh keeps it.
  await page.evaluate(() => { window.stillThisPage = true; });
  process.kill(agentPid, 'SIGKILL');
  await expectText(row.locator('td.status'), /offline/, SLOW);
  if (!(await page.evaluate(() => window.stillThisPage))) throw new Error('the page reloaded');
  await shot('computers-offline');

  step('the offline alert is listed and dismissed in one click');
  await page.click('a[data-nav="alerts"]');
  const alert = page.locator('tr[data-alert-id]', { hasText: hostname });
  await expectText(alert, /offline/i, SLOW);
  await shot('alerts');
  await alert.first().locator('button.dismiss').click();
  await alert.first().waitFor({ state: 'detached' });

  step('a sub-policy is created in the tree');
  await page.click('a[data-nav="policies"]');
  await page.fill('#new-policy-name', 'Servers');
  await page.selectOption('#new-policy-parent', { label: 'Base Policy' });
  await page.click('#new-policy-button');
  const servers = page.locator('a[data-policy-id]', { hasText: 'Servers' });
  await servers.first().waitFor();
  await shot('policies');

  step('the editor shows inherited values and takes a 5-minute interval');
  await servers.first().click();
  await page.waitForURL(/\/policies\/\d+/);
  await expectText(page.locator('[data-inherited-text="heartbeat.interval"]'), /Inherited \(2s from Base Policy\)/);
  await expectText(page.locator('[data-inherited-text="communication.direction"]'), /Inherited/);
  const inheritInterval = page.locator('[data-inherit="heartbeat.interval"]');
  if (await inheritInterval.evaluate((e) => e.tagName === 'SELECT')) {
    await inheritInterval.selectOption('set');
  } else {
    await inheritInterval.uncheck();
  }
  // 25 hours: the browser lets it through, the manager refuses it (1s to 24h), next to the field.
  await page.fill('input[data-field="heartbeat.interval"]', '1500');
  await page.click('button[data-save="heartbeat"]');
  await expectText(page.locator('input[data-field="heartbeat.interval"] ~ .field-error'), /24h|1d|between|range|most/i);
  await shot('policy-editor-error');
  await page.fill('input[data-field="heartbeat.interval"]', '5');
  await page.click('button[data-save="heartbeat"]');
  await page.waitForFunction(() => !document.querySelector('.field-error')?.textContent);
  await shot('policy-editor');

  step('the computer, moved to the sub-policy, shows the interval inherited from it');
  await page.goto(`${url}/computers/${computerId}`);
  await page.selectOption('#move-policy', { label: 'Servers' });
  await page.click('#move-button');
  const interval = page.locator('tr[data-setting="heartbeat.interval"]');
  await expectText(interval.locator('td.value'), /^\s*5m\s*$/);
  await expectText(interval.locator('td.source'), /Servers/);
  await shot('computer');

  step('events, activation and account pages draw');
  await page.click('a[data-nav="events"]');
  await expectText(page.locator('main'), /event/i);
  await shot('events');
  await page.click('a[data-nav="activation"]');
  await page.click('#create-token');
  await expectText(page.locator('#agent-command'), /picket agent .*--token [0-9a-f]{64} --ca-sha256 [0-9a-f]{64}/);
  await shot('activation');
  await page.click('a[data-nav="account"]');
  await shot('account');

  step('logout returns to the login page, and the console is closed again');
  await page.click('#logout');
  await page.waitForURL(/\/login/);
  await page.goto(`${url}/computers`);
  await page.waitForURL(/\/login\?next=/);

  if (problems.length) throw new Error(problems.join('\n'));
  console.log('console: all steps passed');
} catch (e) {
  await shot('failure').catch(() => {});
  console.error(`console test failed at ${page.url()}: ${e.stack || e}`);
  if (problems.length) console.error(problems.join('\n'));
  process.exitCode = 1;
} finally {
  await browser.close();
}
