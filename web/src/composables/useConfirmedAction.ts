import { ref, type Ref } from 'vue'
import { useMutation, useQueryClient } from '@tanstack/vue-query'

/**
 * A destructive action in two clicks (revoke a token, delete an environment
 * or a secret): the first click arms it for one key, the second runs it;
 * on success the listed query is refreshed and nothing stays armed.
 */
export function useConfirmedAction<K>(run: (key: K) => Promise<unknown>, queryKey: () => unknown[]) {
  const qc = useQueryClient()
  const armed = ref(null) as Ref<K | null>
  const action = useMutation({
    mutationFn: run,
    onSuccess: () => {
      armed.value = null
      void qc.invalidateQueries({ queryKey: queryKey() })
    },
  })
  function click(key: K) {
    if (armed.value !== key) return void (armed.value = key)
    action.mutate(key)
  }
  return { armed, action, click }
}
