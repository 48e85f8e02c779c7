// D1 migrations (migrations/), applied by the pinned wrangler to local
// databases in temp dirs, exactly as a deployment applies them with --remote:
// - every migration applied to an empty database gives exactly schema.sql;
// - a database at the previous migration, with rows in every table, takes
//   the newest migration without losing one. Generic over the schema: rows
//   are made up from the tables' own columns, keys and CHECK lists.
// Until there is a second migration, the upgrade check runs on test
// fixtures (tests/fixtures/migrations/) on top of 0001: a table rebuild that
// keeps its rows must pass, one that drops them must fail.
// wrangler applies the migrations; the test reads and fills the local
// databases through their SQLite files (node:sqlite) while no wrangler runs,
// which keeps it to six wrangler runs.
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { ROOT, NODE22, WRANGLER, applySchema } from '../lib/stack.mjs';

const MIGRATIONS = path.join(ROOT, 'migrations');
const FIXTURES = path.join(ROOT, 'tests', 'fixtures', 'migrations');
const scratch = mkdtempSync(path.join(os.tmpdir(), 'atcr-migrations-'));
after(() => rmSync(scratch, { recursive: true, force: true }));
let dirs = 0;
const freshDir = (label) => path.join(scratch, `${++dirs}-${label}`);

/** The .sql files of a migrations folder, in the order wrangler applies them. */
const migrationsIn = (dir) => readdirSync(dir).filter((f) => f.endsWith('.sql')).sort().map((f) => path.join(dir, f));

/** Runs the pinned wrangler; resolves to its output. Async, so the tests below run side by side. */
async function wrangler(args) {
  try {
    const { stdout } = await promisify(execFile)(NODE22, [WRANGLER, ...args], {
      cwd: ROOT, maxBuffer: 16 << 20, env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CI: 'true' },
    });
    return stdout;
  } catch (err) {
    throw new Error(`wrangler ${args.join(' ')} failed (${err.code}):\n${err.stdout}\n${err.stderr}`);
  }
}

/**
 * Opens the SQLite file behind the local D1 database wrangler keeps in
 * `persistTo`, runs `fn` on it and closes it (before wrangler touches it again).
 */
function withSqlite(persistTo, fn) {
  const dir = path.join(persistTo, 'v3', 'd1', 'miniflare-D1DatabaseObject');
  const files = readdirSync(dir).filter((f) => f.endsWith('.sqlite') && f !== 'metadata.sqlite');
  assert.equal(files.length, 1, `one local D1 database in ${dir}`);
  const db = new DatabaseSync(path.join(dir, files[0]));
  try {
    return fn({
      all: (sql) => db.prepare(sql).all().map((row) => ({ ...row })),
      exec: (sql) => db.exec(sql),
    });
  } finally {
    db.close();
  }
}

/**
 * A local D1 database in its own directory whose migrations folder holds
 * what `use` copies in: the way to stop at a given migration. Same binding
 * and database id as wrangler.toml.
 */
function scratchDatabase(label) {
  const dir = freshDir(label);
  const migrations = path.join(dir, 'migrations');
  mkdirSync(migrations, { recursive: true });
  const config = path.join(dir, 'wrangler.toml');
  writeFileSync(config, [
    'name = "atcr-migrations-test"', 'compatibility_date = "2025-09-01"', '[[d1_databases]]',
    'binding = "DB"', 'database_name = "atcr"', 'database_id = "00000000-0000-0000-0000-000000000000"',
    'migrations_dir = "migrations"', '',
  ].join('\n'));
  const state = path.join(dir, 'state');
  return {
    use(files) { for (const f of files) copyFileSync(f, path.join(migrations, path.basename(f))); },
    apply() { return wrangler(['d1', 'migrations', 'apply', 'DB', '--local', '--persist-to', state, '--config', config]); },
    sqlite: (fn) => withSqlite(state, fn),
  };
}

// sqlite_master without SQLite's, D1's and wrangler's own bookkeeping.
const OWN_OBJECTS = "name NOT GLOB 'sqlite_*' AND name NOT GLOB '_cf_*' AND name <> 'd1_migrations'";
const MASTER = `SELECT type, name, tbl_name, sql FROM sqlite_master WHERE ${OWN_OBJECTS} ORDER BY type, name`;

/** SQL text as SQLite keeps it, minus what does not change meaning: comments, spacing, quotes, case. */
const normalizeSql = (sql) => sql && sql
  .replace(/--[^\n]*/g, ' ')
  .replace(/"/g, '')
  .replace(/\s+/g, ' ')
  .replace(/\s*([(),])\s*/g, '$1')
  .trim()
  .toLowerCase();

const schemaOf = (rows) => rows.map((r) => ({ ...r, sql: normalizeSql(r.sql) }));

/** Tables with their columns, primary key and foreign keys, read from the database itself. */
function tablesOf(db) {
  return db.all(`SELECT name, sql FROM sqlite_master WHERE type = 'table' AND ${OWN_OBJECTS} ORDER BY name`).map((t) => {
    const columns = db.all(`PRAGMA table_info("${t.name}")`);
    return {
      name: t.name,
      sql: t.sql,
      columns,
      key: columns.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk).map((c) => c.name),
      foreign: db.all(`PRAGMA foreign_key_list("${t.name}")`), // { table, seq, from, to }
    };
  });
}

const quote = (v) => (typeof v === 'number' ? String(v) : `'${String(v).replace(/'/g, "''")}'`);
const ROWS_PER_TABLE = 3;

/**
 * INSERTs for ROWS_PER_TABLE rows in every table, parents first: foreign key
 * columns copy the referenced row's value, a `col IN ('a', …)` CHECK gets its
 * first value, integers are small numbers and text names its table, column
 * and row (so keys and UNIQUE columns stay distinct).
 */
function seedRows(tables) {
  const byName = new Map(tables.map((t) => [t.name, t]));
  const rows = new Map();
  const inserts = [];
  const visiting = new Set();
  const seed = (table) => {
    if (rows.has(table.name)) return;
    if (visiting.has(table.name)) throw new Error(`foreign keys loop through ${table.name}: extend seedRows`);
    visiting.add(table.name);
    for (const fk of table.foreign) if (fk.table !== table.name && byName.has(fk.table)) seed(byName.get(fk.table));
    const made = [];
    for (let i = 0; i < ROWS_PER_TABLE; i++) {
      const row = {};
      for (const col of table.columns) {
        const fk = table.foreign.find((f) => f.from === col.name && f.table !== table.name);
        const allowed = table.sql.match(new RegExp(`CHECK\\s*\\(\\s*"?${col.name}"?\\s+IN\\s*\\(\\s*'([^']*)'`, 'i'));
        if (fk && rows.has(fk.table)) {
          const parent = byName.get(fk.table);
          row[col.name] = rows.get(fk.table)[i][fk.to ?? parent.key[fk.seq]];
        } else if (allowed) {
          row[col.name] = allowed[1];
        } else if (/INT|REAL|FLOA|DOUB|NUM/i.test(col.type)) {
          row[col.name] = 1000 + i;
        } else {
          row[col.name] = `${table.name}.${col.name}.${i}`;
        }
      }
      made.push(row);
      const names = Object.keys(row);
      inserts.push(`INSERT INTO ${table.name} (${names.join(', ')}) VALUES (${names.map((n) => quote(row[n])).join(', ')})`);
    }
    rows.set(table.name, made);
    visiting.delete(table.name);
  };
  for (const table of tables) seed(table);
  return { rows, sql: inserts.join(';\n') };
}

/** Every table's rows, in a stable order. */
function snapshot(db, tables) {
  const sorted = (rows) => rows.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
  return new Map(tables.map((t) => [t.name, sorted(db.all(`SELECT * FROM "${t.name}"`))]));
}

/**
 * Applies all of `files` but the last to an empty database, fills every table,
 * applies the last one (`wrangler d1 migrations apply`, as an upgrade does)
 * and asserts that no table, column or row went missing: every row is still
 * there under its primary key (the whole row for tables without one), and
 * every row the test put in keeps its values.
 */
async function assertUpgradeKeepsRows(files, label) {
  assert.ok(files.length >= 2, 'an upgrade needs a previous migration');
  const db = scratchDatabase(label);
  db.use(files.slice(0, -1));
  await db.apply();
  const { tables, seeded, before } = db.sqlite((sql) => {
    const tables = tablesOf(sql);
    assert.ok(tables.length > 0, 'the previous migration made tables');
    sql.exec('PRAGMA foreign_keys = ON'); // as D1 has them
    const seeded = seedRows(tables);
    sql.exec(seeded.sql);
    return { tables, seeded, before: snapshot(sql, tables) };
  });
  for (const t of tables) assert.ok(before.get(t.name).length >= ROWS_PER_TABLE, `${t.name} was filled`);

  db.use(files.slice(-1));
  const out = await db.apply();
  assert.match(out, new RegExp(path.basename(files.at(-1)).replace(/\./g, '\\.')), 'the newest migration was applied');

  const afterTables = new Map(db.sqlite(tablesOf).map((t) => [t.name, t]));
  const missingTables = tables.filter((t) => !afterTables.has(t.name)).map((t) => t.name);
  assert.deepEqual(missingTables, [], 'no table went missing');
  const upgraded = db.sqlite((sql) => snapshot(sql, tables));
  for (const t of tables) {
    const now = afterTables.get(t.name);
    const missingColumns = t.columns.map((c) => c.name).filter((c) => !now.columns.some((n) => n.name === c));
    assert.deepEqual(missingColumns, [], `no column of ${t.name} went missing`);
    const identity = (row) => JSON.stringify((t.key.length ? t.key : t.columns.map((c) => c.name)).map((c) => row[c]));
    const kept = new Set(upgraded.get(t.name).map(identity));
    const lost = before.get(t.name).filter((row) => !kept.has(identity(row)));
    assert.deepEqual(lost, [], `every row of ${t.name} is still there`);
    const afterByIdentity = new Map(upgraded.get(t.name).map((row) => [identity(row), row]));
    for (const row of seeded.rows.get(t.name)) {
      const stored = afterByIdentity.get(identity(row));
      const changed = Object.keys(row).filter((c) => stored[c] !== row[c]);
      assert.deepEqual(changed, [], `${t.name} row ${identity(row)} keeps its values`);
    }
  }
}

// Side by side: each test waits on wrangler runs of its own.
describe('D1 migrations', { concurrency: true }, () => {
  test('every migration applied to an empty database gives exactly schema.sql', async () => {
    assert.ok(migrationsIn(MIGRATIONS).length >= 1, 'migrations/ holds the schema');
    // The local stack's own path (tests/lib/stack.mjs) and wrangler.toml's migrations_dir.
    const migrated = freshDir('migrated');
    await applySchema(migrated);
    const reference = freshDir('schema-sql');
    await wrangler(['d1', 'execute', 'DB', '--local', '--persist-to', reference,
      '--config', path.join(ROOT, 'wrangler.toml'), '--file', path.join(ROOT, 'schema.sql')]);

    const dump = (dir) => withSqlite(dir, (db) => ({
      objects: schemaOf(db.all(MASTER)),
      meta: db.all('SELECT key, value FROM meta ORDER BY key'),
    }));
    const got = dump(migrated);
    const want = dump(reference);
    assert.ok(want.objects.some((o) => o.name === 'manifests'), 'the dump sees the tables');
    assert.deepEqual(got.objects.map((o) => `${o.type} ${o.name}`), want.objects.map((o) => `${o.type} ${o.name}`),
      'the same tables and indexes');
    assert.deepEqual(got.objects, want.objects, 'the same definitions');
    assert.deepEqual(got.meta, want.meta, 'the schema_version schema.sql names is the one the migrations leave');
    const applied = withSqlite(migrated, (db) => db.all('SELECT name FROM d1_migrations ORDER BY id')).map((r) => r.name);
    assert.deepEqual(applied, migrationsIn(MIGRATIONS).map((f) => path.basename(f)), 'wrangler recorded each migration');
  });

  test('a database at the previous migration, with rows in every table, upgrades without losing one', async (t) => {
    const files = migrationsIn(MIGRATIONS);
    if (files.length < 2) {
      t.skip('only one migration so far: nothing to upgrade from (the fixtures below exercise the check)');
      return;
    }
    await assertUpgradeKeepsRows(files, 'upgrade');
  });

  test('the upgrade check passes a table rebuild that keeps its rows and fails one that drops them', async () => {
    // On top of 0001, which never changes, so the fixtures stay valid as the schema grows.
    const [first] = migrationsIn(MIGRATIONS);
    await Promise.all([
      assertUpgradeKeepsRows([first, path.join(FIXTURES, 'keeps-rows', '9001_rebuild_repositories.sql')], 'keeps-rows'),
      assert.rejects(
        assertUpgradeKeepsRows([first, path.join(FIXTURES, 'drops-rows', '9001_rebuild_stars.sql')], 'drops-rows'),
        (err) => err instanceof assert.AssertionError && /every row of stars is still there/.test(err.message),
      ),
    ]);
  });
});
