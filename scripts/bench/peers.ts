/**
 * The peers family (`--only peers`): this library side by side with etcd, the usual store for
 * the same job, on the same machine in the same run. Not in the default run: it needs etcd
 * (`scripts/etcd-compare.sh` installs Debian's etcd-server and runs this).
 */
export async function run(_argv: string[]): Promise<void> {
  console.log('peers: run scripts/etcd-compare.sh (it installs etcd and runs this family with it)');
}
