"""Personal data (CONTRACT §11): which accountIds the stored data holds, reporting them to Atlassian through each
tenant's door, and erasing those of closed accounts."""
