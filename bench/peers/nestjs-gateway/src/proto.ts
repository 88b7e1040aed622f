/* The project's proto files through @grpc/proto-loader, and the REST API's one
 * JSON <-> protobuf mapping (gateway/src/json_pb.h) driven by their descriptors:
 * proto field names, enums as the value name without the enum's prefix in lower
 * case (zero value: null out, refused in), every field present on output,
 * integers only as JSON integers in range, unknown or denied fields refused with
 * one violation per problem naming its JSON path ("lines[1].quantity"). */
import * as path from 'node:path';
import * as protoLoader from '@grpc/proto-loader';
import { FieldViolation } from './problem.js';

interface FieldDesc {
  name: string;
  label: string;
  type: string;
  typeName: string;
  oneofIndex?: number;
  proto3Optional?: boolean;
}
interface MessageDesc {
  field: FieldDesc[];
  oneofDecl?: unknown[];
}
interface EnumDesc {
  value: { name: string; number: number }[];
}

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

const MAX_DEPTH = 16;
const MAX_ITEMS = 1000;

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  arrays: true,
  oneofs: false,
};

class EnumInfo {
  readonly toJson = new Map<string, string | null>();
  readonly fromJson = new Map<string, string>();
  readonly names: string[] = [];
  constructor(fullName: string, d: EnumDesc) {
    const short = fullName.slice(fullName.lastIndexOf('.') + 1);
    const prefix = short.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase() + '_';
    for (const v of d.value) {
      const bare = v.name.startsWith(prefix) && v.name.length > prefix.length ? v.name.slice(prefix.length) : v.name;
      const json = bare.toLowerCase();
      this.toJson.set(v.name, v.number === 0 ? null : json);
      if (v.number !== 0) {
        this.fromJson.set(json, v.name);
        this.names.push(json);
      }
    }
  }
}

const INT_RANGE: Record<string, [number, number]> = {
  TYPE_INT32: [-2147483648, 2147483647],
  TYPE_SINT32: [-2147483648, 2147483647],
  TYPE_SFIXED32: [-2147483648, 2147483647],
  TYPE_UINT32: [0, 4294967295],
  TYPE_FIXED32: [0, 4294967295],
  TYPE_INT64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  TYPE_SINT64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  TYPE_SFIXED64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  TYPE_UINT64: [0, Number.MAX_SAFE_INTEGER],
  TYPE_FIXED64: [0, Number.MAX_SAFE_INTEGER],
};

export class ProtoRegistry {
  readonly pkg: protoLoader.PackageDefinition;
  private readonly messages = new Map<string, MessageDesc>();
  private readonly enums = new Map<string, EnumInfo>();

  constructor(root: string) {
    const files = [
      'shop/user/v1/user_service.proto',
      'shop/product/v1/product_service.proto',
      'shop/order/v1/order_service.proto',
      'grpc/health/v1/health.proto',
      'shop/gateway/v1/gateway.proto',
    ];
    this.pkg = protoLoader.loadSync(files, {
      ...LOADER_OPTIONS,
      includeDirs: [path.join(root, 'proto'), path.join(root, 'gateway', 'proto')],
    });
    for (const [name, def] of Object.entries(this.pkg)) {
      const d = def as { format?: string; type?: unknown };
      if (d.format === 'Protocol Buffer 3 DescriptorProto') this.messages.set(name, d.type as MessageDesc);
      else if (d.format === 'Protocol Buffer 3 EnumDescriptorProto') this.enums.set(name, new EnumInfo(name, d.type as EnumDesc));
    }
  }

  private readonly resolved = new Map<string, string>();

  /* A field's typeName (relative to the message that declares it, as protobuf
   * scoping goes) as a full name. */
  private resolve<T>(table: Map<string, T>, typeName: string, scope: string): string {
    if (typeName.startsWith('.')) return typeName.slice(1);
    const memo = `${scope}|${typeName}`;
    const hit = this.resolved.get(memo);
    if (hit) return hit;
    const parts = scope.split('.');
    for (let i = parts.length; i >= 0; i--) {
      const full = [...parts.slice(0, i), typeName].join('.');
      if (table.has(full)) {
        this.resolved.set(memo, full);
        return full;
      }
    }
    throw new Error(`no type ${typeName} in ${scope}`);
  }

  private message(name: string): MessageDesc {
    const m = this.messages.get(name);
    if (!m) throw new Error(`no message ${name}`);
    return m;
  }

  private msgType(f: FieldDesc, scope: string): string {
    return this.resolve(this.messages, f.typeName, scope);
  }

  private enumInfo(f: FieldDesc, scope: string): EnumInfo {
    return this.enums.get(this.resolve(this.enums, f.typeName, scope)) as EnumInfo;
  }

  /* A decoded message (proto-loader's object with defaults) as the API's JSON. */
  toJson(type: string, msg: Record<string, unknown> | null | undefined): JsonObject {
    const out: JsonObject = {};
    const d = this.message(type);
    for (const f of d.field) {
      if (f.type === 'TYPE_BYTES') continue;
      const v = msg ? msg[f.name] : undefined;
      if (f.label === 'LABEL_REPEATED') {
        out[f.name] = Array.isArray(v) ? v.map((x) => this.outValue(f, x, type)) : [];
      } else {
        out[f.name] = this.outValue(f, v, type);
      }
    }
    return out;
  }

  private outValue(f: FieldDesc, v: unknown, scope: string): Json {
    switch (f.type) {
      case 'TYPE_MESSAGE':
        return v == null ? null : this.toJson(this.msgType(f, scope), v as Record<string, unknown>);
      case 'TYPE_ENUM':
        return v == null ? null : (this.enumInfo(f, scope).toJson.get(String(v)) ?? null);
      case 'TYPE_STRING':
        return typeof v === 'string' ? v : '';
      case 'TYPE_BOOL':
        return v === true;
      case 'TYPE_DOUBLE':
      case 'TYPE_FLOAT':
        return typeof v === 'number' && Number.isFinite(v) ? v : v == null ? 0 : null;
      default:
        return typeof v === 'number' ? v : v == null ? 0 : Number(v);
    }
  }

  /* A JSON object into a request object for proto-loader's serializer; violations
   * collects every problem (the message is unusable when it is not empty). */
  fromJson(type: string, obj: JsonObject, deny: readonly string[], violations: FieldViolation[]): Record<string, unknown> {
    return this.inObject(type, obj, deny, '', 1, violations);
  }

  private inObject(type: string, obj: JsonObject, deny: readonly string[], p: string, depth: number, out: FieldViolation[]): Record<string, unknown> {
    const res: Record<string, unknown> = {};
    if (depth > MAX_DEPTH) {
      violation(out, p, 'nested too deeply');
      return res;
    }
    const d = this.message(type);
    const oneofSet = new Map<number, string>();
    for (const [key, v] of Object.entries(obj)) {
      const fp = p ? `${p}.${key}` : key;
      const f = d.field.find((x) => x.name === key);
      if (!f || deny.includes(key)) {
        violation(out, fp, 'unknown field');
        continue;
      }
      if (f.label === 'LABEL_REPEATED') {
        if (!Array.isArray(v)) {
          violation(out, fp, 'must be an array');
          continue;
        }
        if (v.length > MAX_ITEMS) {
          violation(out, fp, 'too many items (at most 1000)');
          continue;
        }
        res[key] = v.map((x, i) => this.inValue(f, x, `${fp}[${i}]`, depth, out, type));
        continue;
      }
      if (v === null && f.type === 'TYPE_MESSAGE') continue;
      /* The descriptors come with defaults (oneofIndex 0 on every field), so a
      * field's group is believed only when the message declares groups (no
      * message of the API does today). */
      if (d.oneofDecl && d.oneofDecl.length > 0 && f.oneofIndex !== undefined && !f.proto3Optional) {
        const other = oneofSet.get(f.oneofIndex);
        if (other !== undefined && other !== key) {
          violation(out, fp, 'only one field of its group may be set');
          continue;
        }
        oneofSet.set(f.oneofIndex, key);
      }
      res[key] = this.inValue(f, v, fp, depth, out, type);
    }
    return res;
  }

  private inValue(f: FieldDesc, v: Json, p: string, depth: number, out: FieldViolation[], scope: string): unknown {
    const range = INT_RANGE[f.type];
    if (range) {
      if (typeof v !== 'number' || !Number.isInteger(v)) return violation(out, p, 'must be an integer');
      if (v < range[0] || v > range[1]) return violation(out, p, `must be between ${range[0]} and ${range[1]}`);
      return v;
    }
    switch (f.type) {
      case 'TYPE_DOUBLE':
      case 'TYPE_FLOAT':
        return typeof v === 'number' ? v : violation(out, p, 'must be a number');
      case 'TYPE_BOOL':
        return typeof v === 'boolean' ? v : violation(out, p, 'must be true or false');
      case 'TYPE_STRING':
        return typeof v === 'string' ? v : violation(out, p, 'must be a string');
      case 'TYPE_ENUM': {
        const e = this.enumInfo(f, scope);
        const name = typeof v === 'string' ? e.fromJson.get(v) : undefined;
        return name ?? violation(out, p, 'must be one of: ' + e.names.join(' '));
      }
      case 'TYPE_MESSAGE':
        if (v === null || typeof v !== 'object' || Array.isArray(v)) return violation(out, p, 'must be an object');
        return this.inObject(this.msgType(f, scope), v, [], p, depth + 1, out);
      default:
        return violation(out, p, 'binary fields are not supported');
    }
  }
}

function violation(out: FieldViolation[], field: string, description: string): undefined {
  out.push({ field: field || '(body)', description });
  return undefined;
}
