from roadscene.cli.app import main

main()
