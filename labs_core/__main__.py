from labs_core.server import main

raise SystemExit(main())
