import type { JsonSchema } from '../api/types'

// Turns a version's params_schema (a JSON Schema object) into form fields and back into input.

export type FieldKind = 'string' | 'integer' | 'number' | 'boolean' | 'enum' | 'json'

export interface Field {
  name: string
  label: string
  kind: FieldKind
  required: boolean
  description?: string
  /** enum choices, for kind 'enum' */
  options?: unknown[]
  default?: unknown
}

/**
 * Form values: strings for text-like inputs (enum: the option index), booleans for checkboxes.
 * v-model on <input type="number"> yields numbers, so those are accepted too.
 */
export type FormValues = Record<string, string | number | boolean>

export class FieldError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message)
  }
}

function kindOf(s: JsonSchema): FieldKind {
  if (Array.isArray(s.enum) && s.enum.length > 0) return 'enum'
  // A Towerfile `type = "json"` parameter: any JSON value, no `type` in the schema.
  if (s['x-type'] === 'json') return 'json'
  const types = Array.isArray(s.type) ? s.type.filter((t) => t !== 'null') : [s.type]
  const t = types.length === 1 ? types[0] : undefined
  if (t === 'string' || t === 'integer' || t === 'number' || t === 'boolean') return t
  if (t === undefined && types.length <= 1) return 'string'
  return 'json'
}

export function fieldsFromSchema(schema: JsonSchema | null | undefined): Field[] {
  if (!schema || typeof schema !== 'object' || !schema.properties) return []
  const required = new Set(Array.isArray(schema.required) ? schema.required : [])
  return Object.entries(schema.properties).map(([name, p]) => {
    const prop: JsonSchema = p && typeof p === 'object' ? p : {}
    return {
      name,
      label: typeof prop.title === 'string' ? prop.title : name,
      kind: kindOf(prop),
      required: required.has(name),
      description: typeof prop.description === 'string' ? prop.description : undefined,
      options: Array.isArray(prop.enum) ? prop.enum : undefined,
      default: prop.default,
    }
  })
}

export function initialValues(fields: Field[]): FormValues {
  const v: FormValues = {}
  for (const f of fields) {
    const d = f.default
    switch (f.kind) {
      case 'boolean':
        v[f.name] = d === true
        break
      case 'enum': {
        const i = d === undefined ? -1 : (f.options ?? []).findIndex((o) => JSON.stringify(o) === JSON.stringify(d))
        v[f.name] = i >= 0 ? String(i) : ''
        break
      }
      case 'json':
        v[f.name] = d === undefined ? '' : JSON.stringify(d, null, 2)
        break
      default:
        v[f.name] = d === undefined || d === null ? '' : String(d)
    }
  }
  return v
}

/**
 * Builds the run input from form values. Empty optional fields are left out so the
 * server applies its own defaults; obvious type errors are reported per field.
 */
export function buildInput(fields: Field[], values: FormValues): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const f of fields) {
    const raw = values[f.name]
    if (f.kind === 'boolean') {
      out[f.name] = raw === true
      continue
    }
    const s = typeof raw === 'string' ? raw : typeof raw === 'number' ? String(raw) : ''
    if (s.trim() === '' && f.kind !== 'string') {
      if (f.required) throw new FieldError(f.name, `${f.label} is required`)
      continue
    }
    switch (f.kind) {
      case 'string':
        if (s === '' && !f.required) continue
        out[f.name] = s
        break
      case 'integer': {
        const n = Number(s)
        if (!Number.isInteger(n)) throw new FieldError(f.name, `${f.label} must be an integer`)
        out[f.name] = n
        break
      }
      case 'number': {
        const n = Number(s)
        if (!Number.isFinite(n)) throw new FieldError(f.name, `${f.label} must be a number`)
        out[f.name] = n
        break
      }
      case 'enum':
        out[f.name] = (f.options ?? [])[Number(s)]
        break
      case 'json':
        try {
          out[f.name] = JSON.parse(s)
        } catch {
          throw new FieldError(f.name, `${f.label} must be valid JSON`)
        }
        break
    }
  }
  return out
}
