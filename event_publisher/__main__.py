from event_publisher.publisher import main

main()
