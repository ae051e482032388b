"""What each database constraint means to a client, by the name the naming convention gives it."""

CONSTRAINT_MESSAGES = {
    "uq_users_email": "a user with this email already exists",
    "uq_items_sku": "an item with this sku already exists",
    "fk_orders_user_id_users": "the user has orders and cannot be deleted",
    "fk_order_lines_item_id_items": "the item is part of orders and cannot be deleted",
    "ck_items_stock_not_negative": "not enough stock",
}
