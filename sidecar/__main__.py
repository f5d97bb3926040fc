from sidecar.cli import main

# Guarded: the monitoring process (multiprocessing's forkserver) imports the main module again.
if __name__ == "__main__":
    raise SystemExit(main())
