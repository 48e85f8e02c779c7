// Writing many records into a PDS at once, as an account migration does:
// the account's repository is exported (com.atproto.sync.getRepo), the
// records are added to it locally with the ATProto repository library,
// and the result is imported (com.atproto.repo.importRepo). The PDS indexes
// every record as if it had been written one by one, in seconds instead of
// the minutes 100,000 applyWrites would take.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const TOOLS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../tools');
const require = createRequire(path.join(TOOLS, 'package.json'));
const repoLib = () => import(require.resolve('@atproto/repo'));
const cryptoLib = () => import(require.resolve('@atproto/crypto'));
const commonLib = () => import(require.resolve('@atproto/common'));

/**
 * Adds records to `did`'s repository on `pds` in one import: for each
 * `{ collection, count, keyOf, valueOf }`, `count` records of `collection`,
 * record `i` under key `keyOf(i)` with the fields `valueOf(i)`. Resolves to
 * the seconds it took.
 */
export async function writeRecords(pds, accessJwt, did, batches) {
  const started = performance.now();
  const { Repo, MemoryBlockstore, BlockMap, DataDiff, readCarWithRoot, blocksToCarFile, signCommit } = await repoLib();
  const { Secp256k1Keypair } = await cryptoLib();
  const { TID } = await commonLib();
  const exported = await fetch(new URL(`/xrpc/com.atproto.sync.getRepo?did=${did}`, pds));
  if (exported.status !== 200) throw new Error(`getRepo: ${exported.status} ${await exported.text()}`);
  const { root, blocks } = await readCarWithRoot(new Uint8Array(await exported.arrayBuffer()));
  const storage = new MemoryBlockstore(blocks);
  const repo = await Repo.load(storage, root);
  // The tree is built in memory and serialized once (Repo.applyWrites would
  // also prove every write, which takes minutes at this size).
  const added = new BlockMap();
  let data = repo.data;
  for (const { collection, count, keyOf, valueOf } of batches) {
    for (let i = 0; i < count; i++) {
      const cid = await added.add({ $type: collection, ...valueOf(i) });
      data = await data.add(`${collection}/${keyOf(i)}`, cid);
    }
  }
  const diff = await DataDiff.of(data, repo.data);
  added.addMap(diff.newMstBlocks);
  // The PDS re-signs on its next commit; an import checks the tree, not the key.
  const commit = await signCommit(
    { did, version: 3, rev: TID.nextStr(repo.commit.rev), prev: null, data: await data.getPointer() },
    await Secp256k1Keypair.create(),
  );
  const commitCid = await added.add(commit);
  storage.blocks.addMap(added);
  const car = await blocksToCarFile(commitCid, storage.blocks);
  const imported = await fetch(new URL('/xrpc/com.atproto.repo.importRepo', pds), {
    method: 'POST', headers: { authorization: `Bearer ${accessJwt}`, 'content-type': 'application/vnd.ipld.car' }, body: car,
  });
  if (imported.status !== 200) throw new Error(`importRepo: ${imported.status} ${await imported.text()}`);
  return (performance.now() - started) / 1000;
}
