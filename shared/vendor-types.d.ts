// proxy-from-env ships no types: this declares the one function the project uses (shared/egress.ts).
declare module 'proxy-from-env' {
  /**
   * The proxy URL for `url` from HTTPS_PROXY / HTTP_PROXY / ALL_PROXY and NO_PROXY of
   * `process.env` (lowercase names first), or '' for a direct connection.
   */
  export function getProxyForUrl(url: string | URL): string;
}
