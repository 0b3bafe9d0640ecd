/**
 * Interoperability with mutt, a full-screen IMAP client: it runs in a detached tmux session (its
 * own socket in a temp directory), the test types keys and reads the screen with capture-pane.
 * Skipped, with the reason, only when mutt or tmux is not installed (apt-get install mutt tmux).
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { installed, PASSWORD, run, startInteropServers, USER } from './servers.js';

const MUTT = installed('mutt');
const TMUX = installed('tmux');

const SUBJECTS = ['mutt reads alpha', 'mutt reads bravo', 'mutt reads charlie'];

test(
  'mutt opens INBOX over IMAP (STARTTLS), lists every subject, shows a message body, and the message it read is \\Seen on the server',
  {
    skip: !MUTT ? 'mutt is not installed (apt-get install mutt)' : !TMUX ? 'tmux is not installed (apt-get install tmux)' : false,
    timeout: 120_000,
  },
  async () => {
    const s = await startInteropServers();
    const dir = await mkdtemp(join(tmpdir(), 'facteur-mutt-'));
    const socket = join(dir, 'tmux.sock');
    const tmux = (...args: string[]) => run('tmux', ['-S', socket, ...args], { env: { HOME: dir, TERM: 'xterm-256color' }, timeoutMs: 15_000 });
    let screen = '';
    /** Polls the screen until it matches (or fails after timeoutMs, showing the last screen). */
    const waitForScreen = async (what: string, ok: (text: string) => boolean, timeoutMs = 30_000): Promise<string> => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const r = await tmux('capture-pane', '-p', '-t', 'mutt');
        screen = r.stdout;
        if (ok(screen)) return screen;
        if (Date.now() > deadline) throw new Error(`mutt screen never showed ${what}; last screen:\n${screen}\n${r.stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    };
    try {
      for (const [i, subject] of SUBJECTS.entries()) await s.sendMail(subject, `This is the body of message ${i + 1}.\r\n`);

      const url = `imap://${encodeURIComponent(USER)}@127.0.0.1:${s.ports.imap}/INBOX`;
      const rc = join(dir, 'muttrc');
      await writeFile(
        rc,
        [
          `set imap_user="${USER}"`,
          `set imap_pass="${PASSWORD}"`,
          // STARTTLS, trusting the test certificate as one saved by the user (no prompt).
          'set ssl_starttls=yes',
          'set ssl_force_tls=yes',
          `set certificate_file="${s.certFile}"`,
          'set ssl_verify_host=no',
          `set folder="imap://127.0.0.1:${s.ports.imap}/"`,
          `set spoolfile="${url}"`,
          'set record=""',
          'set postponed=""',
          'set header_cache=""',
          'set move=no',
          'set sort=date-sent',
          'set mark_old=no',
          'set confirmappend=no',
          'set quit=yes',
          'set wait_key=no',
          // Each index line: a marker, the status flags and the subject, easy to find on screen.
          'set index_format="ROW %Z %s"',
          '',
        ].join('\n'),
      );
      const started = await tmux('new-session', '-d', '-s', 'mutt', '-x', '160', '-y', '40', `mutt -n -F ${rc} -f '${url}'`);
      assert.equal(started.code, 0, `tmux: ${started.stderr}`);

      // The index lists the three messages, all new.
      await waitForScreen('the three subjects', (t) => SUBJECTS.every((sub) => t.includes(sub)));
      const rows = screen.split('\n').filter((l) => l.includes('ROW'));
      assert.equal(rows.length, 3, screen);
      for (const r of rows) assert.match(r, /ROW N/, `each message is new: ${r}`);

      // Open the first one (sorted by date sent: alpha); the pager shows its body.
      const typed = await tmux('send-keys', '-t', 'mutt', 'Enter');
      assert.equal(typed.code, 0, typed.stderr);
      await waitForScreen('the body of message 1', (t) => t.includes('This is the body of message 1.'));
      // Back to the index, then quit (quit=yes: no question); mutt writes the flags back.
      await tmux('send-keys', '-t', 'mutt', 'i');
      await waitForScreen('the index again', (t) => t.includes('ROW'));
      await tmux('send-keys', '-t', 'mutt', 'q');
      const deadline = Date.now() + 30_000;
      while ((await tmux('has-session', '-t', 'mutt')).code === 0) {
        if (Date.now() > deadline) throw new Error(`mutt did not quit; last screen:\n${screen}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }

      const inbox = (await s.snapshot()).get('INBOX')!;
      assert.equal(inbox.length, 3);
      const seen = inbox.filter((e) => e.flags.includes('\\Seen')).map((e) => e.subject);
      assert.deepEqual(seen, ['mutt reads alpha'], 'only the message mutt displayed is \\Seen');
    } finally {
      await tmux('kill-server');
      await s.close();
      await rm(dir, { recursive: true, force: true });
    }
  },
);
