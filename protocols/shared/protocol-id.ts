/**
 * Protocol ids are `/<prefix>/<name>/<semver>`; a node may run under another prefix (tests, testnets).
 */

/** `/<prefix>/<name>/<version>` */
export function protocolId (prefix: string, name: string, version: string): string {
  return `/${prefix}/${name}/${version}`
}
