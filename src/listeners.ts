/**
 * Which protocol server serves each listener name, with the options taken from the config.
 * A factory returning null means the listener cannot start in this configuration (e.g. implicit
 * TLS without a certificate).
 */
import type { Config, ListenerName } from './config/config.js';
import type { ListeningServer, ServerContext } from './context.js';

export type ListenerFactory = (ctx: ServerContext, config: Config, env: { dataDir: string }) => ListeningServer | null;

export const LISTENER_FACTORIES: Partial<Record<ListenerName, ListenerFactory>> = {};
