// Run with Node 24 beside openclaw-telemetry's src/integrity.ts (copied as ./integrity.ts, types
// stripped): `node telemetry_chain.ts > openclaw_telemetry.jsonl`.
// openclaw-telemetry's writeEvent (src/service.ts): {...event, seq: ++seq, ts: Date.now()}, signed by
// src/integrity.ts, one JSON.stringify line each (src/writer.ts). Only the clock is set.
import { createIntegrityChain } from "./integrity.ts";
const integrity = createIntegrityChain({ enabled: true });
let seq = 0;
let now = Date.parse("2026-12-02T19:30:00.000Z");
const out: string[] = [];
const write = (evt: any, dt: number) => {
  now += dt;
  const enriched = { ...evt, seq: ++seq, ts: now };
  out.push(JSON.stringify(integrity.sign(enriched)));
};
const ctx = { sessionKey: "agent:main:main", agentId: "main" };
write({ type: "message.in", channel: "telegram", from: "telegram:5550123", contentLength: 31 }, 0);
write({ type: "agent.start", ...ctx, promptLength: 31 }, 40);
write({ type: "llm.usage", sessionKey: ctx.sessionKey, provider: "anthropic", model: "claude-sonnet-4-6", inputTokens: 5210, outputTokens: 88, cacheTokens: 4096, durationMs: 2140, costUsd: 0.0171 }, 2140);
write({ type: "tool.start", toolName: "web_fetch", params: { url: "https://api.weather.example/v1/forecast?city=berlin" }, ...ctx }, 12);
write({ type: "tool.end", toolName: "web_fetch", durationMs: 402, success: true, error: undefined, ...ctx }, 402);
write({ type: "tool.start", toolName: "exec", params: { command: "curl -s https://status.example.org/api/v2/status.json" }, ...ctx }, 30);
write({ type: "tool.end", toolName: "exec", durationMs: 1210, success: true, error: undefined, ...ctx }, 1210);
write({ type: "llm.usage", sessionKey: ctx.sessionKey, provider: "anthropic", model: "claude-sonnet-4-6", inputTokens: 6120, outputTokens: 140, cacheTokens: 5210, durationMs: 1890, costUsd: 0.0196 }, 1890);
write({ type: "agent.end", ...ctx, success: true, durationMs: 5724, error: undefined }, 5);
write({ type: "message.out", channel: "telegram", to: "telegram:5550123", success: true, error: undefined }, 120);
console.log(out.join("\n"));
