/**
 * Input limits of the POP3 server, each named with the attack or failure it stops. Every byte a
 * client sends is counted against one of these before it is buffered.
 */

/** RFC 2449 §4: a command line, CRLF included, is at most 255 octets. Longer lines are answered
 * -ERR and the session goes on (a client bug, not an attack, until it repeats). */
export const MAX_COMMAND_LINE = 255;

/** RFC 2449 §4: each argument is at most 40 octets (RFC 1939 §3 says the same). */
export const MAX_ARGUMENT_LENGTH = 40;

/** A SASL client response line during an AUTH exchange (RFC 5034 §4). RFC 5034 does not bound
 * it; SCRAM client-final-messages are about 150 octets of base64, so 8 KiB leaves room for large
 * mechanisms while one connection cannot make the server buffer more. */
export const MAX_SASL_RESPONSE_LINE = 8192;

/** An overlong line is discarded as it arrives; past this many discarded octets without a line end
 * the client is not speaking POP3 and the connection is closed (stops a bandwidth sink that keeps
 * the session alive forever). */
export const MAX_DISCARDED_LINE = 64 * 1024;

/** Octets of received-but-unprocessed input held per connection. Past this the socket is paused
 * until commands drain, so a client pipelining without reading cannot grow server memory
 * (RFC 2449 §6.6 PIPELINING lets clients send many commands at once; it does not oblige the server
 * to buffer them all). */
export const MAX_BUFFERED_INPUT = 16 * 1024;

/** Commands answered -ERR in a row (syntax errors, unknown commands, overlong lines) before the
 * connection is closed: stops a client (or a port scanner) that is not speaking POP3. */
export const MAX_CONSECUTIVE_ERRORS = 10;

/** Failed authentication attempts on one connection before it is closed. The Authenticator's
 * per-IP and per-account throttling applies across connections; this only stops one connection
 * from trying passwords in a loop. */
export const MAX_AUTH_FAILURES_PER_CONNECTION = 3;

/** RFC 1939 §7: a unique-id is 1 to 70 characters in the range 0x21 to 0x7E. */
export const MAX_UNIQUE_ID_LENGTH = 70;

/** RFC 1939 §3: the inactivity autologout timer is at least 10 minutes. */
export const DEFAULT_IDLE_TIMEOUT_MS = 10 * 60 * 1000;
/** Before authentication a client has less to wait for: a short timer stops idle connections from
 * holding connection slots. */
export const DEFAULT_PRE_AUTH_IDLE_TIMEOUT_MS = 60 * 1000;
/** TLS handshake (implicit TLS or after STLS) must finish within this. */
export const DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS = 30 * 1000;
