// Types for the one mailauth module used below its public API: the DKIM signer engine that
// mailauth's own `dkimSign` drives (see dkim-sign.ts for why it is used directly).
declare module 'mailauth/lib/dkim/dkim-signer.js' {
  import { Writable } from 'node:stream';

  export interface MailauthParsedHeader {
    key: string | null;
    casedKey: string | undefined;
    line: Buffer;
  }

  export interface MailauthSignatureData {
    signingDomain: string;
    selector: string;
    privateKey: string | Buffer;
    algorithm?: string;
    canonicalization?: string;
  }

  export interface MailauthSignerOptions {
    canonicalization?: string;
    /** Colon-separated field names (an array is ignored by mailauth 4 and the default list used). */
    headerList?: string;
    signTime?: Date;
    expires?: Date;
    signatureData: MailauthSignatureData[];
  }

  export class DkimSigner extends Writable {
    constructor(options: MailauthSignerOptions);
    signatureHeaders: string[];
    errors: Array<{ selector?: string; signingDomain?: string; err?: Error }>;
    messageHeaders(headers: { parsed: MailauthParsedHeader[]; original: Buffer }): Promise<void>;
  }
}
