/**
 * Debug logging, off unless `NODE_DEBUG=redis-consensus` (Node's `util.debuglog`): retries,
 * indeterminate decisions, connection events and the extra write connection. Costs one boolean
 * test per call site when off.
 */
import { debuglog } from 'node:util';

export const debug = debuglog('redis-consensus');
