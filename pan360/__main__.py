from pan360.cli import main

main()
