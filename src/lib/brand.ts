/**
 * Branded primitive types: the compiler keeps a UID from being passed where a sequence number is
 * expected, at no run-time cost. Convert with the constructors below at trust boundaries only
 * (parsers, store rows).
 */
declare const brand: unique symbol;
export type Brand<T, B extends string> = T & { readonly [brand]: B };

export type AccountId = Brand<number, 'AccountId'>;
export type MailboxId = Brand<number, 'MailboxId'>;
/** IMAP UID (RFC 9051 §2.3.1.1): 1..2^32-1, strictly ascending within a UIDVALIDITY. */
export type Uid = Brand<number, 'Uid'>;
/** IMAP message sequence number (RFC 9051 §2.3.1.2): 1..EXISTS, per session view. */
export type SeqNum = Brand<number, 'SeqNum'>;
/** Modification sequence (RFC 7162): per account, strictly ascending, never reused. */
export type ModSeq = Brand<number, 'ModSeq'>;
export type UidValidity = Brand<number, 'UidValidity'>;

export const asAccountId = (n: number): AccountId => n as AccountId;
export const asMailboxId = (n: number): MailboxId => n as MailboxId;
export const asUid = (n: number): Uid => n as Uid;
export const asSeqNum = (n: number): SeqNum => n as SeqNum;
export const asModSeq = (n: number): ModSeq => n as ModSeq;
export const asUidValidity = (n: number): UidValidity => n as UidValidity;
