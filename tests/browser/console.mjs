// Drives the Picket console in Debian's headless chromium, as an administrator would: run by
// tests/e2e/browser.rs against a real manager with one real agent, and a syslog collector of
// its own (a TCP listener) for the notification channel's test. Every step waits on what the
// page shows (Playwright's auto-waiting), never on a fixed sleep, and throws on a miss.
//
// Environment: PICKET_URL (https://127.0.0.1:PORT), PICKET_PASSWORD (the one-time password),
// PICKET_BIN (the picket binary: the agent command copied from the Activation page is run with
// it), AGENT_DIR (the agent's data dir), SCREENSHOTS (a folder for one PNG per page).
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdirSync, openSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

const url = process.env.PICKET_URL;
const oneTime = process.env.PICKET_PASSWORD;
const bin = process.env.PICKET_BIN;
const agentDir = process.env.AGENT_DIR;
const hostname = 'web1';
const shots = process.env.SCREENSHOTS;
let agent = null;

// Runs the agent command as the administrator copied it, with this test's data dir, a fixed
// host name and a loopback listen port (the defaults would be the machine's name and :4118).
function runCopiedCommand(command) {
  const words = command.trim().split(/\s+/);
  // `PICKET_TOKEN=... picket agent ...`: the token travels in the environment, as a shell runs it.
  const env = { ...process.env };
  while (/^[A-Z_]+=/.test(words[0])) {
    const [name, ...value] = words.shift().split('=');
    env[name] = value.join('=');
  }
  if (words[0] !== 'picket' || words[1] !== 'agent') throw new Error(`not an agent command: ${command}`);
  const args = words.slice(1);
  const dir = args.indexOf('--data-dir');
  if (dir < 0) throw new Error(`no --data-dir in ${command}`);
  args[dir + 1] = agentDir;
  args.push('--hostname', hostname, '--listen', '127.0.0.1:0');
  const log = openSync(`${agentDir}.log`, 'a');
  return spawn(bin, args, { stdio: ['ignore', log, log], env });
}
const mine = 'a passphrase of my own';
// Offline detection takes an interval and its grace; the page then needs one refresh.
const SLOW = { timeout: 30_000 };

// A syslog collector over TCP that keeps what it receives, and a port where nothing listens.
let received = '';
const sockets = new Set();
const collector = createServer((socket) => {
  sockets.add(socket);
  socket.on('data', (d) => { received += d.toString(); });
});
await new Promise((resolve) => collector.listen(0, '127.0.0.1', resolve));
const collectorPort = collector.address().port;
const closed = createServer();
await new Promise((resolve) => closed.listen(0, '127.0.0.1', resolve));
const closedPort = closed.address().port;
await new Promise((resolve) => closed.close(resolve));

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

  step('a token is created and its copied agent command activates an agent');
  await page.click('a[data-nav="activation"]');
  await page.locator('#token-policy option', { hasText: 'Base Policy' }).waitFor({ state: 'attached' });
  await page.click('#create-token');
  const command = await expectText(page.locator('#agent-command'), /^PICKET_TOKEN=[0-9a-f]{64} picket agent .*--ca-sha256 [0-9a-f]{64}$/);
  await expectText(page.locator('#install-command'), /^curl -fsS -k --pinnedpubkey 'sha256\/\/[A-Za-z0-9+\/]{43}=' 'https:\/\/[^']+\/agent\/install\.sh\?token=[0-9a-f]{64}' \| sh$/);
  await shot('activation');
  agent = runCopiedCommand(command);

  step('the computers page shows it come online, without a reload');
  await page.click('a[data-nav="computers"]');
  // A reload would lose this mark; the page's own refresh keeps it.
  await page.evaluate(() => { window.stillThisPage = true; });
  const row = page.locator('tr[data-computer-id]', { hasText: hostname });
  await expectText(row.locator('td.status'), /online/, SLOW);
  if (!(await page.evaluate(() => window.stillThisPage))) throw new Error('the page reloaded');
  await shot('computers');
  const computerId = await row.first().getAttribute('data-computer-id');

  step('the dashboard counts the online computer');
  await page.click('a[data-nav="dashboard"]');
  await page.waitForURL(`${url}/`);
  await expectText(page.locator('a[data-status-card="online"] .count'), /^\s*1\s*$/);
  await shot('dashboard');

  step('the agent is killed: the offline alert appears on the open Alerts page');
  await page.click('a[data-nav="alerts"]');
  await page.evaluate(() => { window.stillThisPage = true; });
  agent.kill('SIGKILL');
  const alert = page.locator('tr[data-alert-id]', { hasText: hostname });
  await expectText(alert, /offline/i, SLOW);
  if (!(await page.evaluate(() => window.stillThisPage))) throw new Error('the page reloaded');
  await shot('alerts');

  step('an email channel is added: a refused field shows beside it');
  await page.click('a[data-nav="notifications"]');
  await page.waitForURL(`${url}/notifications`);
  await page.selectOption('#channel-kind', 'email');
  await page.fill('#channel-name', 'oncall');
  await page.fill('#channel-smtp', 'mail.example.com:25');
  await page.selectOption('#channel-security', 'none');
  await page.fill('#channel-from', 'picket@example.com');
  await page.fill('#channel-to', 'oncall@example.com, admin@example.com');
  await page.click('#add-channel');
  await expectText(page.locator('[data-field="security"] + .field-error'), /plain SMTP only to this machine/);
  await shot('notifications-refused');
  await page.selectOption('#channel-security', 'starttls');
  await page.click('#add-channel');
  await expectText(page.locator('tr[data-channel="oncall"] td.target'), /mail\.example\.com:25 \(starttls\).*oncall@example\.com, admin@example\.com/);

  step('a webhook without a secret gets one, shown once');
  await page.selectOption('#channel-kind', 'webhook');
  await page.fill('#channel-name', 'chat');
  await page.fill('#channel-url', `https://127.0.0.1:${closedPort}/hook`);
  await page.fill('#channel-headers', 'X-Team: ops');
  await page.click('#add-channel');
  await expectText(page.locator('#webhook-secret'), /^[0-9a-f]{64}$/);
  await expectText(page.locator('#channel-secret-result .warning'), /will not be shown again/);
  await expectText(page.locator('tr[data-channel="chat"] td.target'), /headers X-Team/);
  await shot('notifications-secret');
  await page.click('#secret-copied');
  await page.locator('#webhook-secret').waitFor({ state: 'detached' });

  step('"Send a test" shows the server\'s answer, or why it failed');
  await page.selectOption('#channel-kind', 'syslog');
  await page.fill('#channel-name', 'siem');
  await page.fill('#channel-address', `127.0.0.1:${collectorPort}`);
  await page.selectOption('#channel-transport', 'tcp');
  await page.selectOption('#channel-format', 'cef');
  await page.fill('#channel-events', 'agent-stopped, 1000');
  await page.click('#add-channel');
  const siem = page.locator('tr[data-channel="siem"]');
  await expectText(siem.locator('td.delivery .events'), /Agent events .*: 0 pending/);
  await siem.locator('button.test-channel').click();
  await expectText(siem.locator('.test-result'), /^Delivered\. The server answered: sent \d+ bytes over tcp/, SLOW);
  for (const deadline = Date.now() + 10_000; !received.includes('CEF:0|'); await page.waitForTimeout(100)) {
    if (Date.now() > deadline) throw new Error(`the collector received no CEF line: "${received}"`);
  }
  const chat = page.locator('tr[data-channel="chat"]');
  await chat.locator('button.test-channel').click();
  await expectText(chat.locator('.test-result.test-failed'), /not delivered/, SLOW);
  await shot('notifications-test');

  step('routes are added and deleted; a channel is removed after a confirmation');
  await page.locator('#route-policy option', { hasText: 'Base Policy' }).waitFor({ state: 'attached' });
  await page.selectOption('#route-channel', 'oncall');
  await page.selectOption('#route-kind', 'computer-offline');
  await page.selectOption('#route-policy', 'Base Policy');
  await page.check('#route-on-repeated');
  await page.click('#add-route');
  const oncallRoute = page.locator('#routes tr[data-route-id]', { hasText: 'oncall' });
  await expectText(oncallRoute, /oncall\s*computer-offline\s*any\s*Base Policy and below\s*raised, repeated, cleared/);
  await page.selectOption('#route-channel', 'chat');
  await page.selectOption('#route-kind', '');
  await page.selectOption('#route-severity', 'warning');
  await page.click('#add-route');
  const chatRoute = page.locator('#routes tr[data-route-id]', { hasText: 'chat' });
  await chatRoute.locator('button.delete-route').click();
  await chatRoute.waitFor({ state: 'detached' });
  page.once('dialog', (dialog) => dialog.accept());
  await chat.locator('button.remove-channel').click();
  await chat.waitFor({ state: 'detached' });

  step('maintenance windows: one on the Base Policy; one on the computer, ended at once');
  await page.selectOption('#window-policy', 'Base Policy');
  await page.fill('#window-duration', '45d');
  await page.fill('#window-reason', 'patching the hosts');
  await page.click('#add-window');
  await expectText(page.locator('[data-field="duration"] + .field-error'), /at most/);
  await page.fill('#window-duration', '2h');
  await page.click('#add-window');
  await page.locator('#maintenance tr[data-window-id]', { hasText: 'patching the hosts' }).waitFor();
  await page.selectOption('#window-target', 'computer');
  await page.locator('#window-computer option', { hasText: hostname }).waitFor({ state: 'attached' });
  await page.selectOption('#window-computer', { label: hostname });
  await page.fill('#window-duration', '1h');
  await page.fill('#window-reason', 'disk swap');
  await page.click('#add-window');
  const swap = page.locator('#maintenance tr[data-window-id]', { hasText: 'disk swap' });
  await expectText(swap, new RegExp(`computer ${hostname}`));
  await shot('notifications');
  await swap.locator('button.end-window').click();
  await swap.waitFor({ state: 'detached' });

  step('the computer page shows the window over its policy, and acknowledges its alert');
  await page.goto(`${url}/computers/${computerId}`);
  await expectText(page.locator('#computer-maintenance'), /In maintenance until .*through the policy Base Policy.*patching the hosts/);
  const ownAlert = page.locator('#computer-alerts tr[data-alert-id]');
  await expectText(ownAlert, /computer-offline/);
  await page.fill('#computer-ack-comment', 'replacing the PSU');
  await ownAlert.first().locator('button.acknowledge').click();
  await expectText(ownAlert.first().locator('td.acknowledged'), /acknowledged\s*by admin.*replacing the PSU/);
  await shot('computer-maintenance');

  step('the Alerts page shows the acknowledgement; the ticked alert is acknowledged again, then dismissed');
  await page.click('a[data-nav="alerts"]');
  await expectText(alert.locator('td.state'), /acknowledged\s*by admin.*replacing the PSU/);
  await alert.first().locator('input.select-alert').check();
  await expectText(page.locator('#alerts-selected'), /^1 selected$/);
  await page.fill('#ack-comment', 'the PSU is on its way');
  await page.click('#bulk-acknowledge');
  await expectText(page.locator('#notice'), /^Acknowledged 1 alert\.$/);
  await expectText(alert.locator('td.state'), /acknowledged\s*by admin.*the PSU is on its way/);
  await shot('alerts-acknowledged');
  await alert.first().locator('input.select-alert').check();
  await page.click('#bulk-dismiss');
  await alert.first().waitFor({ state: 'detached' });
  await expectText(page.locator('#notice'), /^Dismissed 1 alert\.$/);

  step('the computer reads offline');
  await page.click('a[data-nav="computers"]');
  await expectText(row.locator('td.status'), /offline/);
  await shot('computers-offline');

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

  step('the policy editor has the firewall switch, off and inherited from the default');
  await expectText(page.locator('[data-inherited-text="firewall.enabled"]'), /Inherited \(No from Default\)/);
  if (await page.inputValue('select[data-field="firewall.enabled"]') !== 'inherited') throw new Error('firewall.enabled is not inherited');

  step('the policy turns on agent upgrades, which the Base Policy leaves off');
  await expectText(page.locator('[data-inherited-text="agent.auto-upgrade"]'), /Inherited \(No from Default\)/);
  await page.selectOption('select[data-field="agent.auto-upgrade"]', 'true');
  await page.click('button[data-save="agent-upgrade"]');
  await page.waitForFunction(() => document.querySelector('[data-section="agent-upgrade"] .saved')?.textContent === 'Saved.');

  step('a firewall rule is added to the sub-policy, then edited in place keeping its id');
  await page.fill('#rule-name', 'ssh');
  await page.selectOption('#rule-action', 'deny');
  await page.selectOption('#rule-protocol', 'tcp');
  await page.fill('#rule-destination-ports', '22');
  await page.click('#add-rule-button');
  const ownRule = page.locator('#own-rules tbody tr[data-rule-id]');
  await expectText(ownRule, /ssh\s*deny/);
  const ruleId = await ownRule.first().getAttribute('data-rule-id');
  await ownRule.first().locator('button.edit-rule').click();
  await expectText(page.locator('#new-rule h3'), new RegExp(`Edit rule ${ruleId} "ssh"`));
  if (await page.inputValue('#rule-destination-ports') !== '22') throw new Error('the edit form does not hold the rule');
  // Refused by the manager next to its field; the rule stays as it was.
  await page.fill('#rule-destination-ports', '70000');
  await page.click('#add-rule-button');
  await expectText(page.locator('#rule-destination-ports ~ .field-error'), /.+/);
  await page.fill('#rule-name', 'ssh from the admin net');
  await page.selectOption('#rule-action', 'force-allow');
  await page.fill('#rule-destination-ports', '22');
  await page.fill('#rule-source-ips', '10.0.0.0/8');
  await page.click('#add-rule-button');
  await expectText(page.locator('#new-rule .saved'), /Saved rule "ssh from the admin net"/);
  const edited = page.locator(`#own-rules tr[data-rule-id="${ruleId}"]`);
  await expectText(edited, /ssh from the admin net\s*force-allow/);
  await expectText(edited, /10\.0\.0\.0\/8/);
  await expectText(page.locator('#new-rule h3'), /^Add a rule$/);
  if (await ownRule.count() !== 1) throw new Error('the edit added a rule instead of replacing it');
  await shot('policy-rules');

  step('the computer, moved to the sub-policy, shows the interval inherited from it');
  await page.goto(`${url}/computers/${computerId}`);
  await page.selectOption('#move-policy', { label: 'Servers' });
  await page.click('#move-button');
  const interval = page.locator('tr[data-setting="heartbeat.interval"]');
  await expectText(interval.locator('td.value'), /^\s*5m\s*$/);
  await expectText(interval.locator('td.source'), /Servers/);
  const upgrade = page.locator('tr[data-setting="agent.auto-upgrade"]');
  await expectText(upgrade.locator('td.value'), /^\s*true\s*$/);
  await expectText(upgrade.locator('td.source'), /Servers/);
  await shot('computer');

  step('the computer lists the rules it runs in evaluation order, from which policy, and that its firewall is off');
  const runs = page.locator('#computer-rules tbody tr');
  await expectText(page.locator(`#computer-rules tr[data-counter="rule-${ruleId}"] td.origin`), /^Servers$/);
  if (await runs.first().getAttribute('data-counter') !== 'agent-port') throw new Error('the hidden agent-port rule is not first');
  await expectText(runs.first().locator('td.origin'), /hidden/);
  await expectText(page.locator('#firewall-off'), /firewall is off for this computer \(firewall\.enabled from Default\)/);
  await page.locator('#computer-firewall').screenshot({ path: join(shots, 'computer-firewall.png') });

  step('the events page lists the agent\'s events');
  await page.click('a[data-nav="events"]');
  await expectText(page.locator('#events'), /agent-activated/);
  await shot('events');
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
  agent?.kill('SIGKILL');
  collector.close();
  for (const socket of sockets) socket.destroy();
  await browser.close();
}
