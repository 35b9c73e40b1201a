/** Where the worker's `/metrics` listens (`METRICS_HOST`, `METRICS_PORT`), and how this machine reaches it. */

/** `host:port` for the Prometheus exporter's bind address, an IPv6 address in brackets. */
export function metricsListenAddress(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** The `/metrics` URL for a process on this machine: loopback when it listens on every interface. */
export function metricsLocalUrl(host: string, port: number): string {
  const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `http://${metricsListenAddress(reachable, port)}/metrics`;
}
