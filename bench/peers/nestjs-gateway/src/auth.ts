/* Tokens, sessions and budgets, with the C gateway's Redis layout and scripts
 * (gateway/src/auth.c, session.c, ratelimit.c, auth_jwt.c):
 *   <prefix>sess:<sid>       hash user_id, role, created, gen
 *   <prefix>rt:<sha256 hex>  "<sid>:<gen>" of a refresh token
 *   <prefix>rl:<name>:<subj> INCR + PEXPIRE counters
 * An authenticated request costs one EVAL: the session's existence and the
 * user's budget together. */
import { Injectable, OnModuleDestroy } from '@nestjs/common';
import { createHash, randomBytes, randomUUID, createPrivateKey, createPublicKey, KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Redis, type Result } from 'ioredis';
import * as jose from 'jose';
import { Config } from './config.js';
import { ProblemError } from './problem.js';

const LEEWAY_S = 5;

const RATELIMIT_LUA = `if KEYS[2] and redis.call('EXISTS', KEYS[2]) == 0 then
  return {-1, 0}
end
local c = redis.call('INCR', KEYS[1])
local t = redis.call('PTTL', KEYS[1])
if c == 1 or t < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  t = tonumber(ARGV[1])
end
return {c, t}
`;

const SESSION_CREATE_LUA = `redis.call('HSET', KEYS[1], 'user_id', ARGV[1], 'role', ARGV[2], 'created', ARGV[3], 'gen', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SET', KEYS[2], ARGV[5] .. ':1', 'PX', ARGV[4])
return 1
`;

const SESSION_REFRESH_LUA = `local v = redis.call('GET', KEYS[1])
if not v then return {0} end
local sid, gen = string.match(v, '^(.+):(%d+)$')
if not sid then return {0} end
local skey = ARGV[1] .. sid
local s = redis.call('HMGET', skey, 'gen', 'user_id', 'role')
if not s[1] then return {0} end
if s[1] ~= gen then redis.call('DEL', skey) return {-1, sid} end
local ttl = redis.call('PTTL', skey)
if ttl <= 0 then return {0} end
local ng = tostring(tonumber(gen) + 1)
redis.call('HSET', skey, 'gen', ng)
redis.call('SET', KEYS[2], sid .. ':' .. ng, 'PX', ttl)
return {1, sid, s[2], s[3], ttl}
`;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    ratelimit(numKeys: number, ...args: (string | number)[]): Result<[number, number], Context>;
    sessionCreate(k1: string, k2: string, ...args: (string | number)[]): Result<number, Context>;
    sessionRefresh(k1: string, k2: string, prefix: string): Result<(number | string)[], Context>;
  }
}

export interface Claims {
  sub: string;
  role: string;
  sid: string;
}

export interface Budget {
  policy: string;
  limit: number;
  windowS: number;
  remaining: number;
  resetS: number;
  refused: boolean;
}

export interface Grant {
  sid: string;
  userId: string;
  role: string;
  refreshToken: string;
  expiresInMs: number;
}

export function rateLimitHeaders(b: Budget): Record<string, string> {
  const h: Record<string, string> = {
    'RateLimit-Policy': `"${b.policy}";q=${b.limit};w=${b.windowS}`,
    RateLimit: `"${b.policy}";r=${b.remaining};t=${b.resetS}`,
  };
  if (b.refused) h['Retry-After'] = String(b.resetS);
  return h;
}

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

@Injectable()
export class AuthService implements OnModuleDestroy {
  readonly redis: Redis;
  private readonly signKey: Uint8Array | KeyObject;
  private readonly verifyKey: Uint8Array | KeyObject;

  constructor(private readonly cfg: Config) {
    this.redis = new Redis(cfg.redisUrl, {
      enableAutoPipelining: true,
      maxRetriesPerRequest: 1,
      lazyConnect: false,
      username: cfg.redisUsername || undefined,
      password: cfg.redisPassword || undefined,
    });
    this.redis.on('error', () => undefined);
    this.redis.defineCommand('ratelimit', { lua: RATELIMIT_LUA });
    this.redis.defineCommand('sessionCreate', { numberOfKeys: 2, lua: SESSION_CREATE_LUA });
    this.redis.defineCommand('sessionRefresh', { numberOfKeys: 2, lua: SESSION_REFRESH_LUA });
    if (cfg.jwtAlg === 'ES256') {
      this.signKey = createPrivateKey(readFileSync(cfg.jwtPrivateKeyFile));
      this.verifyKey = createPublicKey(readFileSync(cfg.jwtPublicKeyFile));
    } else {
      this.signKey = this.verifyKey = new TextEncoder().encode(cfg.jwtSecret);
    }
  }

  async onModuleDestroy(): Promise<void> {
    this.redis.disconnect();
  }

  private redisDown(): ProblemError {
    return new ProblemError(503, 'a service is unavailable, retry later');
  }

  /* One counted hit: {count, ms left}; guard: a key that must exist (else null). */
  async hit(name: string, subject: string, limit: number, windowMs: number, guard?: string): Promise<Budget | null> {
    const key = `${this.cfg.redisPrefix}rl:${name}:${subject}`;
    let r: [number, number];
    try {
      r = guard ? await this.redis.ratelimit(2, key, guard, windowMs) : await this.redis.ratelimit(1, key, windowMs);
    } catch {
      throw this.redisDown();
    }
    if (r[0] < 0) return null;
    const [count, ms] = r;
    return {
      policy: name,
      limit,
      windowS: Math.ceil(windowMs / 1000),
      remaining: count < limit ? limit - count : 0,
      resetS: ms > 0 ? Math.ceil(ms / 1000) : 1,
      refused: count > limit,
    };
  }

  async verify(token: string): Promise<Claims> {
    let payload: jose.JWTPayload;
    try {
      ({ payload } = await jose.jwtVerify(token, this.verifyKey, {
        algorithms: [this.cfg.jwtAlg],
        issuer: this.cfg.jwtIssuer,
        audience: this.cfg.jwtAudience,
        clockTolerance: LEEWAY_S,
        requiredClaims: ['exp', 'nbf', 'iat', 'sub', 'sid', 'jti', 'role'],
      }));
    } catch {
      throw invalidToken();
    }
    const { sub, role, sid, jti, iat } = payload as Record<string, unknown>;
    if (typeof sub !== 'string' || typeof role !== 'string' || typeof sid !== 'string' || typeof jti !== 'string')
      throw invalidToken();
    if (typeof iat === 'number' && Math.floor(Date.now() / 1000) + LEEWAY_S < iat) throw invalidToken();
    if (role !== 'customer' && role !== 'admin') throw invalidToken();
    return { sub, role, sid };
  }

  /* The session and the budget in one round trip (auth.c auth_budget). */
  async sessionBudget(c: Claims): Promise<Budget> {
    const skey = `${this.cfg.redisPrefix}sess:${c.sid}`;
    const b = await this.hit('user', c.sub, this.cfg.userRequestLimit, this.cfg.userWindowMs, skey);
    if (b === null) throw invalidToken();
    return b;
  }

  async issue(g: Grant): Promise<Record<string, unknown>> {
    const now = Math.floor(Date.now() / 1000);
    const access = await new jose.SignJWT({ role: g.role, sid: g.sid, jti: randomUUID() })
      .setProtectedHeader({ alg: this.cfg.jwtAlg, typ: 'JWT' })
      .setSubject(g.userId)
      .setIssuer(this.cfg.jwtIssuer)
      .setAudience(this.cfg.jwtAudience)
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + this.cfg.accessTtlS)
      .sign(this.signKey);
    return {
      access_token: access,
      token_type: 'Bearer',
      expires_in: this.cfg.accessTtlS,
      refresh_token: g.refreshToken,
      refresh_expires_in: Math.floor(g.expiresInMs / 1000),
      session_id: g.sid,
    };
  }

  private newToken(): [string, string] {
    const t = randomBytes(32).toString('base64url');
    return [t, `${this.cfg.redisPrefix}rt:${sha256(t)}`];
  }

  async createSession(userId: string, role: string): Promise<Grant> {
    const sid = randomUUID();
    const [token, tkey] = this.newToken();
    try {
      await this.redis.sessionCreate(`${this.cfg.redisPrefix}sess:${sid}`, tkey, userId, role, Date.now(), this.cfg.refreshTtlMs, sid);
    } catch {
      throw this.redisDown();
    }
    return { sid, userId, role, refreshToken: token, expiresInMs: this.cfg.refreshTtlMs };
  }

  /* Rotation; null when the token is unknown, reused (session revoked) or ended. */
  async refresh(token: string): Promise<Grant | null> {
    if (!/^[A-Za-z0-9_-]{43}$/.test(token)) return null;
    const old = `${this.cfg.redisPrefix}rt:${sha256(token)}`;
    const [next, nkey] = this.newToken();
    let r: (number | string)[];
    try {
      r = await this.redis.sessionRefresh(old, nkey, `${this.cfg.redisPrefix}sess:`);
    } catch {
      throw this.redisDown();
    }
    if (r[0] !== 1 || r.length !== 5) return null;
    return { sid: String(r[1]), userId: String(r[2]), role: String(r[3]), refreshToken: next, expiresInMs: Number(r[4]) };
  }

  async deleteSession(sid: string): Promise<void> {
    try {
      await this.redis.del(`${this.cfg.redisPrefix}sess:${sid}`);
    } catch {
      throw this.redisDown();
    }
  }

  emailHash(email: string): string {
    return sha256(email.replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, '').replace(/[A-Z]/g, (c) => c.toLowerCase()));
  }
}

export function invalidToken(): ProblemError {
  return new ProblemError(401, 'the token is invalid, expired or revoked', undefined, {
    'WWW-Authenticate': 'Bearer error="invalid_token"',
  });
}
