import { describe, expect, it } from 'vitest'
import { buildInput, FieldError, fieldsFromSchema, initialValues } from '../src/lib/schema'

const schema = {
  type: 'object',
  required: ['name', 'count'],
  properties: {
    name: { type: 'string', default: 'World' },
    count: { type: 'integer', default: 3 },
    ratio: { type: 'number' },
    loud: { type: 'boolean', default: true },
    color: { enum: ['red', 'green'], default: 'green' },
    tags: { type: 'array', items: { type: 'string' } },
  },
}

describe('params schema form', () => {
  it('derives one field per property with kinds, required flags and defaults', () => {
    const f = fieldsFromSchema(schema)
    expect(f.map((x) => [x.name, x.kind, x.required])).toEqual([
      ['name', 'string', true],
      ['count', 'integer', true],
      ['ratio', 'number', false],
      ['loud', 'boolean', false],
      ['color', 'enum', false],
      ['tags', 'json', false],
    ])
    expect(initialValues(f)).toEqual({ name: 'World', count: '3', ratio: '', loud: true, color: '1', tags: '' })
  })

  it('builds typed input and omits empty optional fields', () => {
    const f = fieldsFromSchema(schema)
    const v = { ...initialValues(f), tags: '["a"]' }
    expect(buildInput(f, v)).toEqual({ name: 'World', count: 3, loud: true, color: 'green', tags: ['a'] })
  })

  it('reports type errors per field', () => {
    const f = fieldsFromSchema(schema)
    expect(() => buildInput(f, { ...initialValues(f), count: '1.5' })).toThrow(FieldError)
    expect(() => buildInput(f, { ...initialValues(f), count: '' })).toThrow(/required/)
    expect(() => buildInput(f, { ...initialValues(f), tags: '[' })).toThrow(/JSON/)
  })

  it('has no fields without a schema', () => {
    expect(fieldsFromSchema(null)).toEqual([])
    expect(fieldsFromSchema({ type: 'object' })).toEqual([])
  })
})

describe('number inputs', () => {
  it('accepts numbers from v-model on type="number" inputs', () => {
    const f = fieldsFromSchema(schema)
    expect(buildInput(f, { ...initialValues(f), count: 4, ratio: 0.5 })).toMatchObject({ count: 4, ratio: 0.5 })
  })
})

describe('Towerfile typed parameters', () => {
  // The schema the server derives from typed [[parameters]] (crates/core towerfile/parameters.rs).
  const towerfileSchema = {
    type: 'object',
    properties: {
      count: { type: 'integer', default: 3 },
      ratio: { type: 'number' },
      loud: { type: 'boolean', default: false },
      mode: { type: 'string', enum: ['fast', 'slow'], default: 'fast' },
      extra: { 'x-type': 'json', default: { k: [1] } },
      name: { type: 'string', default: 'World' },
    },
    required: [],
    additionalProperties: false,
  }

  it('renders every declared type with its own control', () => {
    const f = fieldsFromSchema(towerfileSchema)
    expect(f.map((x) => [x.name, x.kind])).toEqual([
      ['count', 'integer'],
      ['ratio', 'number'],
      ['loud', 'boolean'],
      ['mode', 'enum'],
      ['extra', 'json'],
      ['name', 'string'],
    ])
    expect(initialValues(f).extra).toBe('{\n  "k": [\n    1\n  ]\n}')
  })

  it('sends typed values, not strings', () => {
    const f = fieldsFromSchema(towerfileSchema)
    const v = { ...initialValues(f), count: '7', ratio: '0.5', loud: true, mode: '1', extra: '{"a": null}' }
    const input = buildInput(f, v)
    expect(input).toEqual({ count: 7, ratio: 0.5, loud: true, mode: 'slow', extra: { a: null }, name: 'World' })
    expect(typeof input.count).toBe('number')
    expect(() => buildInput(f, { ...v, extra: 'not json' })).toThrow(/JSON/)
  })
})
