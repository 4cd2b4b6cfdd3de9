// The settings the console edits, and how their values read: durations, sources, directions.

export const DIRECTIONS = [
  ['bidirectional', 'Bidirectional'],
  ['manager-initiated', 'Manager Initiated'],
  ['agent-initiated', 'Agent Initiated'],
];
export const SETTING_KEYS = [
  'heartbeat.interval',
  'heartbeat.missed-before-alert',
  'heartbeat.max-clock-change',
  'heartbeat.offline-errors-for-inactive-vms',
  'communication.direction',
  'firewall.enabled',
  'agent.auto-upgrade',
];
// Built-in defaults (DESIGN.md): what the Base Policy inherits.
export const DEFAULTS = {
  'heartbeat.interval': { value: '10m', source: 'default' },
  'heartbeat.missed-before-alert': { value: 2, source: 'default' },
  'heartbeat.max-clock-change': { value: '15m', source: 'default' },
  'heartbeat.offline-errors-for-inactive-vms': { value: false, source: 'default' },
  'communication.direction': { value: 'bidirectional', source: 'default' },
  'firewall.enabled': { value: false, source: 'default' },
  'agent.auto-upgrade': { value: false, source: 'default' },
};

// "1h30m" → 5400; NaN for anything else. The API writes durations as 30s, 10m, 2h, 7d.
function durationSeconds(text) {
  const units = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };
  const str = String(text).trim();
  if (!/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(str)) return NaN;
  let total = 0;
  for (const m of str.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) total += Number(m[1]) * units[m[2]];
  return total;
}

export function durationToMinutes(text) {
  const s = durationSeconds(text);
  return Number.isNaN(s) ? '' : String(Math.round((s / 60) * 10000) / 10000);
}

// Minutes typed in the console → the API's duration: "Nm" when whole, else whole seconds.
export function minutesToDuration(minutes) {
  const seconds = Math.round(minutes * 60);
  return seconds % 60 === 0 ? seconds / 60 + 'm' : seconds + 's';
}

export function sourceLabel(source) {
  if (source === 'computer') return 'This computer (override)';
  if (source === 'default') return 'Default';
  if (typeof source !== 'string') return '—';
  if (source.startsWith('policy:')) return source.slice('policy:'.length);
  if (source.startsWith('kind:')) {
    const kind = source.slice('kind:'.length);
    return kind.charAt(0).toUpperCase() + kind.slice(1);
  }
  return source;
}

export function directionLabel(value) {
  const found = DIRECTIONS.find((d) => d[0] === value);
  return found ? found[1] : String(value);
}
