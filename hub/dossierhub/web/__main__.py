from dossierhub.web.app import main

main()
