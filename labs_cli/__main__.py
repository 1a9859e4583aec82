from labs_cli.main import main

raise SystemExit(main())
