export type SigninMode = 'token' | 'password'

export const SIGNIN_MODE_KEY = 'minitower.signin-mode'

const isMode = (v: unknown): v is SigninMode => v === 'token' || v === 'password'

/**
 * Which sign-in tab opens: ?mode=… when given, else the one last used successfully in this
 * browser, else the token tab (`minitower dev` prints a token, not a password).
 */
export function initialSigninMode(queryMode?: unknown): SigninMode {
  if (isMode(queryMode)) return queryMode
  try {
    const saved = localStorage.getItem(SIGNIN_MODE_KEY)
    if (isMode(saved)) return saved
  } catch {
    /* storage unavailable */
  }
  return 'token'
}

export function rememberSigninMode(mode: SigninMode): void {
  try {
    localStorage.setItem(SIGNIN_MODE_KEY, mode)
  } catch {
    /* storage unavailable */
  }
}
