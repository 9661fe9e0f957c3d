/**
 * Bus subjects of the chat pool. Room ids are [a-z0-9_-], valid NATS tokens.
 *
 *   parley.chat.room.<room>        core: messages, typing, presence, membership of one room
 *   parley.chat.load               core: load reports for the lookup services (and the operator)
 *   parley.chat.control.<instance> core: drain/resume commands from the operator (drain.ts)
 *   parley.compliance.chat.<kind>  JetStream: compliance events (see docs/compliance-events.md)
 *   parley.files.delete            JetStream: files to remove from shared storage
 */
export const roomSubject = (roomId: string) => `parley.chat.room.${roomId}`;
export const LOAD_SUBJECT = "parley.chat.load";
export const controlSubject = (instanceId: string) => `parley.chat.control.${instanceId}`;
export { COMPLIANCE_STREAM } from "../common/compliance.js";
export { FILES_DELETE_SUBJECT, FILES_STREAM } from "../common/file-tokens.js";
