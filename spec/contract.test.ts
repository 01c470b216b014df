/** The contract suite on ioredis-mock and, when one answers, a real Redis. */
import { backends } from './support/backends.js';
import { contractSuite } from './support/contract.js';

for (const backend of await backends()) contractSuite(backend);
