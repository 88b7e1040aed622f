-- wrk -s bench/wrk-auth.lua: every request carries the bearer token of BENCH_TOKEN.
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
