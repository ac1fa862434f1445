import { defineStore } from 'pinia'
import { ref, watch } from 'vue'

export type Theme = 'light' | 'dark'
export const THEME_KEY = 'minitower.theme'

function initial(): Theme {
  try {
    const t = localStorage.getItem(THEME_KEY)
    if (t === 'light' || t === 'dark') return t
  } catch {
    /* ignore */
  }
  return typeof matchMedia === 'function' && matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light'
}

/** Light/dark theme; the choice is remembered once the user toggles it. */
export const useThemeStore = defineStore('theme', () => {
  const theme = ref<Theme>(initial())
  watch(theme, (t) => (document.documentElement.dataset.theme = t), { immediate: true })
  function toggle() {
    theme.value = theme.value === 'dark' ? 'light' : 'dark'
    try {
      localStorage.setItem(THEME_KEY, theme.value)
    } catch {
      /* ignore */
    }
  }
  return { theme, toggle }
})
