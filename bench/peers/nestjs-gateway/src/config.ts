import { readFileSync } from 'node:fs';

/* The C gateway's settings (gateway/src/main.c), read once from the same
 * environment variables with the same defaults. Only those this peer uses. */

export abstract class Config {
  abstract addr: string;
  abstract host: string;
  abstract port: number;
  abstract redisUrl: string;
  abstract redisPrefix: string;
  abstract upstream: { order: string; product: string; user: string };
  abstract jwtAlg: 'HS256' | 'ES256';
  abstract jwtSecret: string;
  abstract jwtPrivateKeyFile: string;
  abstract jwtPublicKeyFile: string;
  abstract jwtIssuer: string;
  abstract jwtAudience: string;
  abstract accessTtlS: number;
  abstract refreshTtlMs: number;
  abstract upstreamTimeoutMs: number;
  abstract bodyLimit: number;
  abstract loginIpLimit: number;
  abstract loginAccountLimit: number;
  abstract registerIpLimit: number;
  abstract registerAccountLimit: number;
  abstract authWindowMs: number;
  abstract userRequestLimit: number;
  abstract userWindowMs: number;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60000, h: 3600000 };

function duration(name: string, def: string): number {
  const v = process.env[name] || def;
  const m = /^(\d+)(ms|s|m|h)$/.exec(v);
  if (!m) throw new Error(`${name}: not a duration: ${v}`);
  return Number(m[1]) * UNITS[m[2]];
}

function int(name: string, def: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`${name}: not an integer: ${v}`);
  return n;
}

function str(name: string, def: string): string {
  const v = process.env[name];
  return v === undefined || v === '' ? def : v;
}

/* A secret setting: NAME, or the file NAME_FILE names (one trailing newline
 * dropped), never both: the C programs' rule (common/src/config.c). */
function secret(name: string, def: string): string {
  const file = process.env[`${name}_FILE`];
  if (file === undefined || file === '') return str(name, def);
  if (process.env[name]) throw new Error(`${name} and ${name}_FILE are both set: give one`);
  const v = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  if (v === '') throw new Error(`${name}_FILE: ${file} is empty`);
  return v;
}

export function loadConfig(): Config {
  const addr = str('GATEWAY_ADDR', '0.0.0.0:8080');
  const i = addr.lastIndexOf(':');
  const alg = str('JWT_ALG', 'HS256');
  if (alg !== 'HS256' && alg !== 'ES256') throw new Error('JWT_ALG: HS256 or ES256');
  const jwtSecret = secret('JWT_SECRET', '');
  if (alg === 'HS256' && Buffer.byteLength(jwtSecret) < 32)
    throw new Error('JWT_SECRET: at least 32 bytes with HS256');
  const accessMs = duration('ACCESS_TOKEN_TTL', '15m');
  return {
    addr,
    host: addr.slice(0, i).replace(/^\[|\]$/g, '') || '0.0.0.0',
    port: Number(addr.slice(i + 1)),
    redisUrl: secret('REDIS_URL', 'redis://127.0.0.1:6380'),
    redisPrefix: process.env.REDIS_PREFIX ?? 'gw:',
    upstream: {
      order: str('ORDER_ADDR', '127.0.0.1:50051'),
      product: str('PRODUCT_ADDR', '127.0.0.1:50052'),
      user: str('USER_ADDR', '127.0.0.1:50053'),
    },
    jwtAlg: alg,
    jwtSecret,
    jwtPrivateKeyFile: str('JWT_PRIVATE_KEY_FILE', ''),
    jwtPublicKeyFile: str('JWT_PUBLIC_KEY_FILE', ''),
    jwtIssuer: str('JWT_ISSUER', 'shop-gateway'),
    jwtAudience: str('JWT_AUDIENCE', 'shop-api'),
    accessTtlS: Math.floor(accessMs / 1000),
    refreshTtlMs: duration('REFRESH_TOKEN_TTL', '168h'),
    upstreamTimeoutMs: duration('UPSTREAM_TIMEOUT', '2s'),
    bodyLimit: int('BODY_LIMIT', 65536),
    loginIpLimit: int('LOGIN_RATE_IP', 10),
    loginAccountLimit: int('LOGIN_RATE_ACCOUNT', 5),
    registerIpLimit: int('REGISTER_RATE_IP', 10),
    registerAccountLimit: int('REGISTER_RATE_ACCOUNT', 3),
    authWindowMs: duration('AUTH_RATE_WINDOW', '1m'),
    userRequestLimit: int('USER_RATE_LIMIT', 600),
    userWindowMs: duration('USER_RATE_WINDOW', '1m'),
  };
}
