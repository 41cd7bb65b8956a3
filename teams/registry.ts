import type { Clock } from "../lib/mod.ts";
import {
  casUpdate,
  FreshView,
  KeyWatch,
  kvCall,
  type KvCallOptions,
  type KvCas,
  type KvList,
  type KvWatchPort,
  teamKey,
  teamPrefix,
  teamsChangedKey,
} from "../kv/mod.ts";

import {
  checkTeamName,
  parseTeamFields,
  type Team,
  type TeamContext,
  type TeamSettings,
} from "./team.ts";
import { newTeamToken, tokenSha256 } from "./token.ts";

/** The longest a request waits for the teams to be read when its view is too old, in ms. */
const WAIT_AT_MOST_MS = 250;

/** What KV holds of a team made through the admin API: its hash, never its token. */
interface StoredTeam {
  settings: TeamSettings;
  tokenSha256: string;
  createdAt: number;
}

/** The team a KV record holds. */
function apiTeam(name: string, stored: StoredTeam): Team {
  return { name, source: "api", tokenSha256: stored.tokenSha256, ...stored.settings };
}

/** Options for {@linkcode TeamRegistry}. */
export interface TeamRegistryOptions {
  kv: KvCas & KvList & KvWatchPort;
  clock: Clock;
  /** The services a team may name, with their limits (team limits may not exceed them). */
  context: TeamContext;
  /**
   * The oldest view of the teams made through the API that a request acts
   * on, in ms: a request that finds it older has it read first (waiting
   * 250 ms at most: KV slow or down, the last view decides); at half that
   * age it is read in the background. Default 2000.
   */
  refreshMs?: number;
  call?: KvCallOptions;
  /**
   * Hear changes through `kv.watch` (reads on a request's account become
   * a 30 s backstop). Only where KV tells every instance of every write:
   * Deploy's KV and KV Connect; a local SQLite file does not tell one
   * process of another's writes. Default true.
   */
  watch?: boolean;
}

/** Why an admin change was refused; the admin API maps it to 404, 409 or 400. */
export class TeamChangeError extends Error {
  override name = "TeamChangeError";
  constructor(readonly kind: "unknown" | "clash" | "read_only", message: string) {
    super(message);
  }
}

/**
 * Every team this instance knows: those declared in config (fixed) and
 * those made through the admin API (in KV). The API's teams are read when
 * a request needs them ({@linkcode TeamRegistry.fresh}), so a change made
 * on any instance holds on every one within `refreshMs`, an instance
 * woken after a long sleep included, and an idle one reads nothing. A
 * client's token is found by its SHA-256.
 */
export class TeamRegistry {
  #config: ReadonlyMap<string, Team>;
  #api = new Map<string, Team>();
  #byHash = new Map<string, Team>();
  #kv: KvCas & KvList & KvWatchPort;
  #clock: Clock;
  #context: TeamContext;
  #call: KvCallOptions;
  /** When the API's teams were last read, and reading them again (kv/fresh_view.ts). */
  #view: FreshView;
  /** Hears a change to the API's teams (the stamp each change bumps) as it is made. */
  #watch: KeyWatch | undefined;
  /** Changes made here: a read that began before one is older than this view. */
  #changesHere = 0;

  constructor(configTeams: readonly Team[], options: TeamRegistryOptions) {
    this.#config = new Map(configTeams.map((t) => [t.name, t]));
    this.#kv = options.kv;
    this.#clock = options.clock;
    this.#context = options.context;
    const refreshMs = options.refreshMs ?? 2000;
    if (!(refreshMs > 0)) throw new RangeError(`refreshMs must be > 0 (got ${refreshMs})`);
    this.#call = options.call ?? {};
    this.#view = new FreshView({
      clock: this.#clock,
      // Told of a change, read it where it was made: a replica may not have it yet.
      read: (changed) => this.refresh(changed ? "strong" : "eventual"),
      status: this.#call.status,
      refreshAfterMs: refreshMs / 2,
      waitAfterMs: refreshMs,
      waitAtMostMs: WAIT_AT_MOST_MS,
    });
    this.#watch = options.watch === false
      ? undefined
      : new KeyWatch(this.#kv, [teamsChangedKey()], this.#clock, {
        changed: (first) => this.#view.changed(!first),
        live: (on) => this.#view.watchLive(on),
      });
    this.#view.watchedBy(this.#watch ? 1 : 0);
    this.#index();
  }

  /** True when any team could exist (declared, or possibly made through the API). */
  get any(): boolean {
    return this.#byHash.size > 0;
  }

  /** The team whose token hashes to `sha256`, if any. */
  byHash(sha256: string): Team | undefined {
    return this.#byHash.get(sha256);
  }

  /** The team called `name`, if any. */
  get(name: string): Team | undefined {
    return this.#config.get(name) ?? this.#api.get(name);
  }

  /** Every team, config ones first, each list by name. */
  list(): Team[] {
    const byName = (a: Team, b: Team) => a.name < b.name ? -1 : 1;
    return [...[...this.#config.values()].sort(byName), ...[...this.#api.values()].sort(byName)];
  }

  /**
   * Makes sure the view of the API's teams is no older than `refreshMs`
   * before a request acts on it. Returns a promise only when the request
   * must wait for a read (see kv/fresh_view.ts).
   */
  fresh(now?: number): Promise<void> | undefined {
    return this.#view.fresh(now);
  }

  /** Reads the teams made through the API, once, as the instance starts. */
  async start(): Promise<void> {
    await this.#view.readNow();
  }

  /** Stops the watch while the instance sleeps (see gateway/lifecycle.ts). */
  pause(): void {
    this.#watch?.stop();
  }

  /** Starts the watch again after {@linkcode TeamRegistry.pause}; its first word reads the teams. */
  resume(): void {
    this.#watch?.start();
  }

  /**
   * Reads the teams made through the API from KV (keeps the last view if KV
   * fails). Eventual by default: in-region, and a change is heard by the watch.
   */
  async refresh(consistency: Deno.KvConsistencyLevel = "eventual"): Promise<void> {
    const changes = this.#changesHere;
    const entries = await kvCall(async () => {
      const out: Deno.KvEntry<StoredTeam>[] = [];
      const teams = this.#kv.list<StoredTeam>({ prefix: teamPrefix() }, { consistency });
      for await (const e of teams) out.push(e);
      return out;
    }, this.#call);
    // Older than a change made here meanwhile (it would bring back a deleted team or a rotated
    // token): the view stays as it is until the next read.
    if (this.#changesHere !== changes) return;
    const api = new Map<string, Team>();
    for (const e of entries) {
      const name = e.key[1] as string;
      if (!this.#config.has(name)) api.set(name, apiTeam(name, e.value));
    }
    this.#api = api;
    this.#index();
  }

  /** Makes a team; returns it with its token, which nothing keeps. */
  async create(raw: Record<string, unknown>): Promise<{ team: Team; token: string }> {
    const name = checkTeamName(raw.name);
    if (this.#config.has(name)) throw this.#readOnly(name);
    const settings = parseTeamFields(raw, this.#context, { allow: ["name"] });
    const token = newTeamToken();
    const stored: StoredTeam = {
      settings,
      tokenSha256: tokenSha256(token),
      createdAt: this.#clock.now(),
    };
    const key = teamKey(name);
    const res = await kvCall(
      () =>
        this.#kv.atomic().check({ key, versionstamp: null }).set(key, stored)
          .sum(teamsChangedKey(), 1n).commit(),
      this.#call,
    );
    if (!res.ok) throw new TeamChangeError("clash", `A team named "${name}" already exists.`);
    return { team: this.#learn(name, stored), token };
  }

  /** Changes some of a team's settings. */
  async patch(name: string, raw: unknown): Promise<Team> {
    if (this.#config.has(name)) throw this.#readOnly(name);
    const stored = await this.#change(name, (s) => ({
      ...s,
      settings: parseTeamFields(raw, this.#context, { base: s.settings }),
    }));
    return this.#learn(name, stored);
  }

  /** Issues a new token; the old one stops working (everywhere within `refreshMs`). */
  async rotate(name: string): Promise<{ team: Team; token: string }> {
    if (this.#config.has(name)) throw this.#readOnly(name);
    const token = newTeamToken();
    const stored = await this.#change(name, (s) => ({ ...s, tokenSha256: tokenSha256(token) }));
    return { team: this.#learn(name, stored), token };
  }

  /** Removes a team; its token stops working (everywhere within `refreshMs`). */
  async delete(name: string): Promise<void> {
    if (this.#config.has(name)) throw this.#readOnly(name);
    const key = teamKey(name);
    const entry = await kvCall(() => this.#kv.get<StoredTeam>(key), this.#call);
    if (entry.value === null) throw this.#unknown(name);
    const res = await kvCall(
      () => this.#kv.atomic().check(entry).delete(key).sum(teamsChangedKey(), 1n).commit(),
      this.#call,
    );
    if (!res.ok) throw new TeamChangeError("clash", `Team "${name}" changed meanwhile; retry.`);
    this.#api.delete(name);
    this.#changesHere++;
    this.#index();
  }

  /** Stops the watch and any read a change scheduled. */
  close(): void {
    this.#watch?.stop();
    this.#view.close();
  }

  async #change(name: string, edit: (s: StoredTeam) => StoredTeam): Promise<StoredTeam> {
    const update = await casUpdate<StoredTeam, StoredTeam | undefined>(
      this.#kv,
      teamKey(name),
      (current) => {
        if (current === null) return { done: undefined };
        const next = edit(current);
        return { write: next, result: next };
      },
      { call: this.#call, bump: [teamsChangedKey()] },
    );
    if (!update.ok) throw new TeamChangeError("clash", `Team "${name}" kept changing; retry.`);
    if (update.result === undefined) throw this.#unknown(name);
    return update.result;
  }

  #learn(name: string, stored: StoredTeam): Team {
    const team = apiTeam(name, stored);
    this.#api.set(name, team);
    this.#changesHere++;
    this.#index();
    return team;
  }

  #index(): void {
    const byHash = new Map<string, Team>();
    for (const t of this.#api.values()) byHash.set(t.tokenSha256, t);
    for (const t of this.#config.values()) byHash.set(t.tokenSha256, t);
    this.#byHash = byHash;
  }

  #readOnly(name: string): TeamChangeError {
    return new TeamChangeError(
      "read_only",
      `Team "${name}" is declared in GATEWAY_CONFIG; change it there.`,
    );
  }

  #unknown(name: string): TeamChangeError {
    return new TeamChangeError("unknown", `No team named "${name}".`);
  }
}
