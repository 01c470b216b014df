/**
 * A worker process of the bench's append section (scripts/bench/append.ts): one RedisConsensus,
 * one writer. For each message `{ mode, key, durationMs }` it appends to `key` for that long,
 * either with `append` or with the README's loop (head, compareAndSet, re-read on mismatch), and
 * replies with its commits and their latencies. Exits on `{ stop: true }`.
 */
import { RedisConsensus } from '../../lib/index.js';
import { readmeLoop } from './append.js';

interface Round { mode: 'loop' | 'append'; key: string; durationMs: number; stop?: boolean }

const [url, prefix] = process.argv.slice(2) as [string, string];
const consensus = await RedisConsensus.connect(url, { prefix });
const payload = Buffer.alloc(1024, 7);

process.on('message', (message: Round) => {
  if (message.stop) {
    void consensus.close().then(() => process.disconnect());
    return;
  }
  void (async () => {
    const latencies: number[] = [];
    const until = performance.now() + message.durationMs;
    while (performance.now() < until) {
      const started = performance.now();
      if (message.mode === 'append') await consensus.append(message.key, () => payload);
      else await readmeLoop(consensus, message.key, payload);
      latencies.push(performance.now() - started);
    }
    process.send!({ latencies });
  })();
});
process.send!({ ready: true });
