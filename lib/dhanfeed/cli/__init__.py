"""The programs, one module each (bin/* run them): renew_token, collector, backfill, status,
export_candles, sqlite_to_postgres, dhan_sim and demo (the last two run the simulator); args holds what they
share. Each `main(argv=None) -> int` parses, loads the config, makes the program's one clock,
sets up logging, runs, and maps known errors to the exit-code table in `dhanfeed.errors`."""
