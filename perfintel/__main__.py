from perfintel.cli import main

main()
