/**
 * RFC 5322 §3.3 date-time, with the obsolete forms of §4.3 (two- and three-digit years, named
 * zones, military zones, comments, missing day-of-week or seconds) and the asctime order some old
 * software writes ("Mon Jan  1 10:00:00 2024").
 *
 * Invariants: never throws; returns epoch milliseconds or null when the value is not a date.
 */

import { stripComments } from './headers.js';

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

/** RFC 5322 §4.3 obs-zone, in minutes east of UTC. Military zones "SHOULD be considered
 * equivalent to -0000" (§4.3), as their sign was historically got wrong. */
const NAMED_ZONES: ReadonlyMap<string, number> = new Map(Object.entries({
  ut: 0,
  utc: 0,
  gmt: 0,
  z: 0,
  est: -300,
  edt: -240,
  cst: -360,
  cdt: -300,
  mst: -420,
  mdt: -360,
  pst: -480,
  pdt: -420,
}));

const ISO_8601 = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?\s*(Z|[+-]\d{2}:?\d{2})?$/i;

export function parseDate(value: string | null | undefined): number | null {
  if (value === null || value === undefined) return null;
  const input = stripComments(value.length > 200 ? value.slice(0, 200) : value).trim();
  if (input === '') return null;

  const iso = ISO_8601.exec(input);
  if (iso !== null) {
    let offset = 0;
    const z = iso[7];
    if (z !== undefined && z.toLowerCase() !== 'z') {
      const digits = z.replace(':', '');
      offset = (digits[0] === '-' ? -1 : 1) * (Number(digits.slice(1, 3)) * 60 + Number(digits.slice(3, 5)));
    }
    return build(Number(iso[1]), Number(iso[2]) - 1, Number(iso[3]), Number(iso[4]), Number(iso[5]), Number(iso[6] ?? 0), offset);
  }

  // "01-Jan-2024" (seen from old gateways) reads as "01 Jan 2024"; commas and dots separate.
  const tokens = input
    .replace(/(\d{1,2})-([A-Za-z]{3,9})-(\d{2,4})/, '$1 $2 $3')
    .replace(/[,]/g, ' ')
    .split(/\s+/)
    .filter((t) => t !== '');

  let day = -1;
  let month = -1;
  let year = -1;
  let yearDigits = 0;
  let hour = -1;
  let minute = 0;
  let second = 0;
  let zone: number | null = null;

  for (const raw of tokens) {
    const t = raw.toLowerCase().replace(/\.$/, '');
    if (/^[a-z]+$/.test(t)) {
      const m = t.length >= 3 ? MONTHS.indexOf(t.slice(0, 3)) : -1;
      if (m >= 0 && month < 0) {
        month = m;
        continue;
      }
      if (t.length >= 3 && DAYS.includes(t.slice(0, 3))) continue; // day-of-week is informative
      if (hour >= 0 && zone === null) {
        const named = NAMED_ZONES.get(t);
        if (named !== undefined) zone = named;
        else if (t.length === 1 && t !== 'j') zone = 0; // RFC 5322 §4.3 military zones
      }
      continue;
    }
    const time = /^(\d{1,2}):(\d{1,2})(?::(\d{1,2}))?(?:\.\d+)?$/.exec(t);
    if (time !== null) {
      if (hour >= 0) continue;
      hour = Number(time[1]);
      minute = Number(time[2]);
      second = Number(time[3] ?? 0);
      continue;
    }
    const offset = /^([+-])(\d{2}):?(\d{2})$/.exec(t);
    if (offset !== null && (hour >= 0 || year >= 0)) {
      if (zone === null) {
        zone = (offset[1] === '-' ? -1 : 1) * (Number(offset[2]) * 60 + Number(offset[3]));
      }
      continue;
    }
    if (/^\d+$/.test(t)) {
      const n = Number(t);
      if (t.length <= 2 && day < 0 && n >= 1 && n <= 31) {
        day = n;
      } else if (year < 0 && t.length <= 4) {
        year = n;
        yearDigits = t.length;
      }
      continue;
    }
  }

  if (day < 0 || month < 0 || year < 0) return null;
  // RFC 5322 §4.3: a two-digit year below 50 is 20xx, otherwise 19xx; three digits add 1900.
  if (yearDigits <= 2) year += year < 50 ? 2000 : 1900;
  else if (yearDigits === 3) year += 1900;
  if (hour < 0) hour = 0;
  return build(year, month, day, hour, minute, second, zone ?? 0);
}

function build(year: number, month: number, day: number, hour: number, minute: number, second: number, offsetMinutes: number): number | null {
  if (month < 0 || month > 11 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return null;
  if (Math.abs(offsetMinutes) > 99 * 60 + 59) return null;
  // A leap second (RFC 5322 §3.3 allows 60) is counted as the last second of the minute.
  const t = Date.UTC(year, month, day, hour, minute, Math.min(second, 59)) - offsetMinutes * 60_000;
  if (!Number.isFinite(t)) return null;
  // Date.UTC maps years 0-99 to 1900-1999; only four-digit years reach here below 100 on purpose.
  if (year >= 0 && year < 100) return null;
  return t;
}
