import { computed, type MaybeRefOrGetter, toValue } from 'vue'
import { keepPreviousData, useQuery } from '@tanstack/vue-query'
import { api, ApiError } from '../api/client'
import { isActive, type Run } from '../api/types'
import { type ClientRunFilters, type FilteredPage, hasClientFilters, listRunsFiltered } from '../lib/runFilters'

/**
 * A page of a run list. Without client-side filters it is one API page; with a run id or a
 * date range (the API has no parameter for either) see listRunsFiltered.
 */
export function useFilteredRuns(opts: {
  key: MaybeRefOrGetter<unknown[]>
  fetchPage: (limit: number, offset: number) => Promise<Run[]>
  filters: MaybeRefOrGetter<ClientRunFilters>
  offset: MaybeRefOrGetter<number>
  limit: number
  idleRefetch?: number | false
}) {
  const clientSide = computed(() => hasClientFilters(toValue(opts.filters)))
  const query = useQuery({
    queryKey: computed(() => [...toValue(opts.key), toValue(opts.filters), toValue(opts.offset)]),
    queryFn: async (): Promise<FilteredPage> => {
      const offset = toValue(opts.offset)
      if (!clientSide.value) {
        const runs = await opts.fetchPage(opts.limit, offset)
        return { runs, hasMore: runs.length >= opts.limit, truncated: false }
      }
      return listRunsFiltered({
        fetchPage: opts.fetchPage,
        getRun: (id) =>
          api.getRun(id).catch((e) => {
            if (e instanceof ApiError && e.status === 404) return null
            throw e
          }),
        filters: toValue(opts.filters),
        offset,
        limit: opts.limit,
      })
    },
    placeholderData: keepPreviousData,
    // Keep the list fresh while something is in flight.
    refetchInterval: (q) => (q.state.data?.runs.some((r) => isActive(r.status)) ? 3000 : (opts.idleRefetch ?? false)),
  })
  return { query, clientSide }
}
