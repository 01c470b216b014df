#!/usr/bin/env node
// A process that uses a store and serves its metrics and a health check over HTTP:
//   GET /metrics  Prometheus text (prom-client), including redis_consensus_* metrics
//   GET /healthz  200 {"ok":true,"pingMs":...} when Redis answers, 503 when it does not
// It appends to a key twice a second so there is something to see.
//
//   npm install prom-client   # an optional peer dependency of redis-consensus
//   npm run build && REDIS_URL=redis://127.0.0.1:6379 PORT=9464 node examples/metrics-server.mjs
//
// Stop it with Ctrl-C; it deletes nothing (its prefix is `example-metrics`).
import { createServer } from 'node:http';
import * as promClient from 'prom-client';
import { CaSResult, RedisConsensus, prometheusObserver } from 'redis-consensus';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const port = Number(process.env.PORT ?? 9464);
const consensus = await RedisConsensus.connect(url, {
  prefix: 'example-metrics',
  observer: prometheusObserver(promClient),
});

const ticker = setInterval(async () => {
  try {
    const head = await consensus.head('ticks');
    const next = { seqno: head === null ? 0n : head.seqno + 1n, data: Buffer.from(new Date().toISOString()) };
    if ((await consensus.compareAndSet('ticks', head?.seqno ?? null, next)) === CaSResult.Committed && next.seqno >= 100n) {
      await consensus.truncate('ticks', next.seqno - 50n);
    }
  } catch (err) {
    console.error(err.message);
  }
}, 500);

const server = createServer(async (request, response) => {
  if (request.url === '/metrics') {
    response.writeHead(200, { 'content-type': promClient.register.contentType });
    response.end(await promClient.register.metrics());
  } else if (request.url === '/healthz') {
    try {
      const pingMs = await consensus.ping({ timeoutMs: 1000 });
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ ok: true, pingMs }));
    } catch (err) {
      response.writeHead(503, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ ok: false, error: err.message }));
    }
  } else {
    response.writeHead(404).end();
  }
});
server.listen(port, '127.0.0.1', () => console.log(`http://127.0.0.1:${port}/metrics and /healthz`));

process.once('SIGINT', async () => {
  clearInterval(ticker);
  server.close();
  await consensus.close();
});
