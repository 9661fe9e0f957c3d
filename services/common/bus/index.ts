/**
 * The bus between services. Pick NatsBus when a NATS URL is configured,
 * MemoryBus when everything runs in one process (`parley up`, unit tests).
 */
export type {
  Bus,
  BusMessage,
  Consumer,
  ConsumerOptions,
  DurableMessage,
  Headers,
  PublishAck,
  StreamConfig,
  Subscription,
} from "./types.js";
export { MemoryBus, subjectMatches, type MemoryBusOptions } from "./memory.js";
export { NatsBus, type NatsBusOptions } from "./nats.js";
