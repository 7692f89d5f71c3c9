from radshare.cli import main

main()
