import { beforeEach, describe, expect, it } from 'vitest'
import { initialSigninMode, rememberSigninMode, SIGNIN_MODE_KEY } from '../src/lib/signinMode'

beforeEach(() => localStorage.clear())

describe('sign-in tab', () => {
  it('defaults to the token tab', () => {
    expect(initialSigninMode()).toBe('token')
    expect(initialSigninMode('bogus')).toBe('token')
  })
  it('remembers the last used tab; ?mode= wins', () => {
    rememberSigninMode('password')
    expect(localStorage.getItem(SIGNIN_MODE_KEY)).toBe('password')
    expect(initialSigninMode()).toBe('password')
    expect(initialSigninMode('token')).toBe('token')
    localStorage.setItem(SIGNIN_MODE_KEY, 'garbage')
    expect(initialSigninMode()).toBe('token')
  })
})
