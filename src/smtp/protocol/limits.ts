/**
 * SMTP input limits: each named constant says which attack it stops. Session options may lower or
 * raise the ones marked "default"; the protocol layer enforces whatever it is given.
 */

/** RFC 5321 §4.5.3.1.4: a command line is at most 512 octets including CRLF. RFC 5321 lets
 * extensions raise it: RFC 3461 §4 adds ORCPT (up to 500 octets of xtext) and ENVID (100) and
 * RFC 4954 the AUTH= parameter, so MAIL/RCPT lines get that much more. Stops memory growth from a
 * client that never sends LF. */
export const COMMAND_LINE_MAX = 512;
export const COMMAND_LINE_EXTENSION_ALLOWANCE = 1024;

/** RFC 4954 §4: an AUTH continuation line may be as long as the mechanism needs (base64 of a
 * SCRAM message or a PLAIN triple with long names); 12288 is what RFC 4954 §4 suggests servers
 * accept ("at least 12288 octets"). */
export const AUTH_LINE_MAX = 12_288;

/** RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets including CRLF. Real mail breaks this
 * (HTML generators, long base64 without folding), so DATA lines are accepted up to this documented
 * bound, then the message is refused with 500 5.5.2 / 554 5.6.0 after its end. Stops a single
 * unbounded line from being treated as a message of normal shape. */
export const DATA_LINE_MAX_DEFAULT = 10_000;

/** Default SIZE (RFC 1870): 50 MB. Refused at MAIL FROM SIZE= and again while streaming
 * (RFC 1870 §6, 552 5.3.4). */
export const MESSAGE_SIZE_DEFAULT = 50 * 1024 * 1024;

/** RFC 5321 §4.5.3.1.8 requires accepting at least 100 recipients; more is refused with
 * 452 4.5.3 so one transaction cannot fan out without bound. */
export const RECIPIENTS_MAX_DEFAULT = 100;

/** Errors (4xx/5xx replies to commands) before 421 and disconnect: stops dictionary attacks on
 * RCPT and clients that loop on a refused command. */
export const ERRORS_MAX_DEFAULT = 10;

/** Unknown recipients (550 5.1.1) one client IP may be told about within the window, over all its
 * connections, before every further RCPT from it is deferred with 450 4.7.1 (port 25 only):
 * stops directory harvesting, which ERRORS_MAX_DEFAULT only slows down to one reconnect per ten
 * guesses. While deferred, known and unknown recipients get the same answer, so it is no oracle. */
export const RCPT_PROBES_MAX_DEFAULT = 20;
export const RCPT_PROBES_WINDOW_MS_DEFAULT = 10 * 60_000;

/** Simultaneous connections from one IP address: one host cannot take every session slot. */
export const CONNECTIONS_PER_IP_DEFAULT = 20;
export const CONNECTIONS_MAX_DEFAULT = 1000;

/** RFC 5321 §4.5.3.2.7: the server waits at least 5 minutes for the next command. */
export const COMMAND_TIMEOUT_MS_DEFAULT = 5 * 60_000;
/** RFC 5321 §4.5.3.2.5-6: 3 minutes per data block is what a client waits; the server's idle
 * timeout while receiving data uses the same bound. */
export const DATA_TIMEOUT_MS_DEFAULT = 3 * 60_000;

/** The message phase (a DATA body, or a BDAT transaction from its first chunk to LAST) must keep
 * a minimum average rate after a grace period: the session's `messageGraceMs` plus one second per
 * `minDataBytesPerSecond` bytes received (the IMAP literal bound of net/command-deadline.ts, with
 * the same defaults from [security]: 60 s and 8192 bytes/s). Stops a slow-loris sender who keeps
 * DATA open for hours by trickling a byte just inside each inactivity timeout. This cap bounds the
 * whole phase whatever the rate: 2 hours, above the 1 h 48 min a 50 MiB message (the default SIZE)
 * takes at the floor rate, so it never cuts a sender that keeps the floor at the defaults. */
export const MESSAGE_TIMEOUT_MS_DEFAULT = 2 * 3600_000;

/** Unprocessed pipelined input held per connection before reading pauses (RFC 2920 lets a client
 * send many commands at once; this bounds what one client can make us buffer). */
export const INPUT_BUFFER_MAX = 64 * 1024;

/** RFC 5321 §4.5.3.1.1-3: local part 64 octets, domain 255, path 256. */
export const LOCAL_PART_MAX = 64;
export const DOMAIN_MAX = 255;
export const PATH_MAX = 256;

/** Submission: remote recipients an account may send to in 24 hours (config
 * submission.max_remote_recipients_per_day; 0 turns the limit off). A compromised account's
 * spam run stops there; a person rarely writes to a thousand outside addresses a day. */
export const SUBMISSION_REMOTE_RECIPIENTS_PER_DAY_DEFAULT = 1000;
