from pirate_worker.cli import main

main()
