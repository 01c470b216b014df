/**
 * A worker process of the concurrency workload (spec/support/workload.ts): receives the plans of
 * its clients as one JSON message, runs them, sends back their histories, and exits.
 */
import { runClients, stringifyHistories } from '../spec/support/workload.js';
import type { ClientPlan } from '../spec/support/workload.js';

process.once('message', (message) => {
  const plans = JSON.parse(message as string) as ClientPlan[];
  runClients(plans).then((histories) => {
    process.send!(stringifyHistories(histories), () => process.disconnect());
  }, (err: unknown) => {
    console.error('workload worker failed:', err);
    process.exit(1);
  });
});
