/** App slug rule from the API contract. */
export const SLUG_RE = /^[a-z][a-z0-9-]{0,62}$/
