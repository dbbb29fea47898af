// Run with Node 24 beside NanoClaw's src/log.ts: `TZ=Europe/Berlin node nanoclaw_lines.ts`.
// Runs NanoClaw's own src/log.ts (qwibitai/nanoclaw 0683c6ec, 2026-05-18) with the
// calls src/container-runner.ts makes; only the clock is set, so the lines are
// what NanoClaw prints at those moments (TZ=Europe/Berlin: local time, as NanoClaw does).
const RealDate = Date;
let now = 0;
class FixedDate extends RealDate {
  constructor(...args: any[]) { if (args.length) { super(...(args as [])); } else { super(now); } }
  static now() { return now; }
}
(globalThis as any).Date = FixedDate;
const { log } = await import('./log.ts');
const at = (iso: string) => { now = RealDate.parse(iso); };
const sessionId = 'sess-1796239200-main';
const containerName = 'nanoclaw-v2-main-1796239200000';
at('2026-12-02T19:20:00.118Z'); log.info('Spawning container', { sessionId, agentGroup: 'Main', containerName });
at('2026-12-02T19:20:00.431Z'); log.info('OneCLI gateway applied', { containerName });
at('2026-12-02T19:35:00.002Z'); log.info('Killing container', { sessionId, reason: 'idle timeout', containerName });
at('2026-12-02T19:35:01.270Z'); log.info('Container exited', { sessionId, code: 137, containerName });
at('2026-12-02T19:40:00.000Z'); log.info('Spawning container', { sessionId: 'sess-1796239800-research', agentGroup: 'Research', containerName: 'nanoclaw-v2-research-1796239800000' });
at('2026-12-02T19:40:00.050Z'); log.error('Container spawn error', { sessionId: 'sess-1796239800-research', err: new Error('spawn docker ENOENT') });
