# jq -e -f bench/keys.jq results.json: true when bench/results.json has every key that
# bench/README.md documents (values may be null: a figure that could not be taken) and
# every target of DESIGN.md section 8 in the {value, target, unit, met} form.
. as $root
| [["http_floor", "wrk"], ["http_floor", "fixed_rate"],
   ["gateway_read", "wrk"], ["gateway_read", "fixed_rate"], ["gateway_read", "grpc_direct_ghz"],
   ["gateway_read", "grpc_direct_fixed_rate"], ["gateway_read", "added_latency_us"],
   ["gateway_read", "breakdown_mean_us"],
   ["saga", "steps"], ["saga", "peak_confirmed_rps"], ["saga", "half_peak"],
   ["saga", "breakdown"], ["saga", "pgbench"],
   ["footprint", "at_rest_mib"], ["footprint", "under_load_mib"], ["footprint", "peak_mib"],
   ["footprint", "startup_ms"], ["footprint", "smaps_at_end_mib"],
   ["ratios", "gateway_read_vs_http_floor"], ["ratios", "saga_vs_pgbench"],
   ["machine", "nproc"], ["machine", "model"], ["machine", "kernel"],
   ["versions", "gcc"], ["versions", "postgres"], ["versions", "libmicrohttpd12"],
   ["settings", "connections"], ["settings", "seconds"], ["settings", "phase_seconds"]]
| all(.[]; . as $p | $root | getpath($p[:-1]) | type == "object" and has($p[-1]))
  and ($root.targets | type == "object"
       and all(.[]; has("value") and has("target") and has("unit") and (.met | type == "boolean"))
       and (keys | contains(["gateway_read_throughput_ratio", "gateway_added_p50_us",
                             "saga_throughput_ratio", "saga_p50_ms", "saga_p99_ms",
                             "footprint_total_mib"]))
       and ([keys[] | select(startswith("startup_ms_"))] | length >= 4))
